//! TensorBoard event files in the run directory, so `tensorboard --logdir runs` follows
//! every run: each number of a metrics line as a scalar, the sample grids as images, the
//! sketch as text and the sketch's keys as hparams.
//!
//! An event file is a sequence of records: the payload's length (u64, little-endian), a
//! masked CRC32C of those 8 bytes, the payload (an `Event` protobuf), a masked CRC32C of
//! the payload. The messages below are the subset of TensorFlow's `event.proto`,
//! `summary.proto`, `tensor.proto` and the hparams plugin's `plugin_data.proto` that easel
//! writes, with their field numbers.
//!
//! Resume: the trainer rewrites the file without the records past the checkpoint (as it
//! does metrics.jsonl), so no reader sees a step twice, and then writes a
//! `SessionLog.START` at the first new step — TensorBoard's own signal to drop anything
//! it already loaded from that step on.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prost::Message;

use super::Metric;
use crate::recipe::write_atomically;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1 = START: TensorBoard drops what it holds at this step and later.
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    #[prost(string, tag = "3")]
    pub msg: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Kind", tags = "2, 4, 8")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    #[prost(string, tag = "2")]
    pub display_name: String,
    #[prost(string, tag = "3")]
    pub summary_description: String,
    /// 2 = a tensor (text summaries).
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// 7 = DT_STRING.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// No dimensions: a scalar.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {}

/// The hparams plugin's `HParamsPluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(oneof = "HParamsData", tags = "3, 4")]
    pub data: Option<HParamsData>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: BTreeMap<String, HParamValue>,
    #[prost(string, tag = "4")]
    pub group_name: String,
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    /// 1 success, 2 failure, 3 running (stopped early, resumable).
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `google.protobuf.Value`, the kinds a sketch key can take.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamValue {
    #[prost(oneof = "HParamKind", tags = "2, 3, 4")]
    pub kind: Option<HParamKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamKind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

const SESSION_START: i32 = 1;
const DT_STRING: i32 = 7;
const DATA_CLASS_TENSOR: i32 = 2;

/// How a run ended, for the hparams view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Finished,
    Failed,
    /// Stopped or interrupted: it can be resumed.
    Unfinished,
}

/// TensorFlow's masked CRC32C: a CRC of data that holds CRCs is easily zero, so the
/// stored value is rotated and offset.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn encode_record(event: &Event) -> Vec<u8> {
    let payload = event.encode_to_vec();
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&masked_crc(&payload).to_le_bytes());
    out
}

/// What reading an event file found: the whole records, and whether the file ends in a
/// record cut short (a writer killed mid-write; the next writer drops it).
#[derive(Debug, Default)]
pub struct Records {
    pub events: Vec<Event>,
    pub torn_tail: bool,
}

/// Reads every record of an event file, checking both CRCs of each. A bad CRC or a
/// payload that is not an `Event` is an error naming the file and offset; a record cut
/// short at the end is not (see [`Records::torn_tail`]).
pub fn read_records(path: &Path) -> Result<Records> {
    let mut bytes = vec![];
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = Records::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 12 {
            records.torn_tail = true;
            break;
        }
        let len_bytes = &rest[..8];
        let stored = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if masked_crc(len_bytes) != stored {
            bail!("{}: bad length CRC at byte {at}", path.display());
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(16))
            .filter(|&end| end <= rest.len())
        else {
            records.torn_tail = true;
            break;
        };
        let payload = &rest[12..end - 4];
        let stored = u32::from_le_bytes(rest[end - 4..end].try_into().expect("4 bytes"));
        if masked_crc(payload) != stored {
            bail!(
                "{}: bad data CRC in the record at byte {at}",
                path.display()
            );
        }
        let event = Event::decode(payload).with_context(|| {
            format!(
                "{}: the record at byte {at} is not an Event",
                path.display()
            )
        })?;
        records.events.push(event);
        at += end;
    }
    Ok(records)
}

fn is_session_info(e: &Event) -> bool {
    matches!(&e.what, Some(What::Summary(s))
        if s.value.iter().any(|v| v.tag.starts_with("_hparams_/")))
}

/// The event files of a run directory, in the order TensorBoard reads them (by name).
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    files.sort();
    files
}

/// Appends events to a run directory's event file.
pub struct EventWriter {
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir`, starting with the version record TensorBoard expects.
    pub fn create(dir: &Path) -> Result<Self> {
        let name = format!(
            "events.out.tfevents.{:010}.easel",
            super::now().floor() as u64
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = EventWriter {
            out: BufWriter::new(file),
        };
        w.write(&Event {
            wall_time: super::now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(w)
    }

    /// Opens the run's newest event file for appending (or creates one), after dropping
    /// from every event file the records of steps past `kept_step` and any torn record at
    /// the end — a run resumed from the checkpoint at `kept_step` writes those steps
    /// again. A fresh run passes `None`: nothing of an earlier file is kept.
    pub fn resume(dir: &Path, kept_step: Option<u64>) -> Result<Self> {
        let files = event_files(dir);
        let Some(kept_step) = kept_step else {
            for f in &files {
                std::fs::remove_file(f)
                    .with_context(|| format!("cannot remove {}", f.display()))?;
            }
            return Self::create(dir);
        };
        for f in &files {
            let records = read_records(f)?;
            // TensorBoard keeps the first hparams record of a run and ignores later ones:
            // the resumed session's (its target may have changed) must be the only one.
            let keep = |e: &Event| e.step <= kept_step as i64 && !is_session_info(e);
            if records.torn_tail || !records.events.iter().all(keep) {
                write_atomically(f, |out| {
                    for e in records.events.iter().filter(|e| keep(e)) {
                        out.write_all(&encode_record(e))?;
                    }
                    Ok(())
                })?;
            }
        }
        let mut w = match Self::append(dir)? {
            Some(w) => w,
            None => return Self::create(dir),
        };
        w.write(&Event {
            wall_time: super::now(),
            step: kept_step as i64 + 1,
            what: Some(What::SessionLog(SessionLog {
                status: SESSION_START,
                msg: format!("resumed from the checkpoint at step {kept_step}"),
                ..Default::default()
            })),
        })?;
        Ok(w)
    }

    /// The run's newest event file, opened to append to (none if it has none).
    pub fn append(dir: &Path) -> Result<Option<Self>> {
        let Some(newest) = event_files(dir).pop() else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&newest)
            .with_context(|| format!("cannot open {}", newest.display()))?;
        Ok(Some(EventWriter {
            out: BufWriter::new(file),
        }))
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        self.out.write_all(&encode_record(event))?;
        Ok(())
    }

    fn summary(&mut self, step: u64, wall_time: f64, value: Vec<Value>) -> Result<()> {
        self.write(&Event {
            wall_time,
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Every number of a metrics line, as scalars at its step.
    pub fn metric(&mut self, m: &Metric) -> Result<()> {
        let value = scalars_of(m)
            .into_iter()
            .map(|(tag, v)| Value {
                tag,
                metadata: None,
                kind: Some(Kind::SimpleValue(v as f32)),
            })
            .collect();
        self.summary(m.step, m.time, value)
    }

    /// `picture`, whose PNG file holds `png`, as an image at `step`.
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        picture: &image::DynamicImage,
        png: Vec<u8>,
    ) -> Result<()> {
        let value = Value {
            tag: tag.into(),
            metadata: None,
            kind: Some(Kind::Image(Image {
                height: picture.height() as i32,
                width: picture.width() as i32,
                colorspace: picture.color().channel_count() as i32,
                encoded_image_string: png,
            })),
        };
        self.summary(step, super::now(), vec![value])
    }

    /// Text (the sketch) for TensorBoard's text tab, shown as Markdown: indented four
    /// spaces so it reads as code.
    pub fn text(&mut self, step: u64, tag: &str, text: &str) -> Result<()> {
        let markdown: String = text.lines().map(|l| format!("    {l}\n")).collect();
        let value = Value {
            tag: tag.into(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                    content: vec![],
                }),
                data_class: DATA_CLASS_TENSOR,
                ..Default::default()
            }),
            kind: Some(Kind::Tensor(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShape {}),
                string_val: vec![markdown.into_bytes()],
            })),
        };
        self.summary(step, super::now(), vec![value])
    }

    /// The sketch's keys as hparams (nested maps flattened to `a.b`; lists as JSON), so
    /// TensorBoard's HParams tab compares runs by them.
    pub fn hparams(&mut self, step: u64, keys: &serde_json::Value) -> Result<()> {
        let mut hparams = BTreeMap::new();
        flatten_hparams("", keys, &mut hparams);
        let data = HParamsData::SessionStartInfo(SessionStartInfo {
            hparams,
            group_name: String::new(),
            start_time_secs: super::now(),
        });
        self.plugin_event(step, "_hparams_/session_start_info", data)
    }

    /// How the session ended, for the HParams tab's status column.
    pub fn end(&mut self, step: u64, ending: Ending) -> Result<()> {
        let status = match ending {
            Ending::Finished => 1,
            Ending::Failed => 2,
            Ending::Unfinished => 3,
        };
        let data = HParamsData::SessionEndInfo(SessionEndInfo {
            status,
            end_time_secs: super::now(),
        });
        self.plugin_event(step, "_hparams_/session_end_info", data)?;
        self.flush()
    }

    fn plugin_event(&mut self, step: u64, tag: &str, data: HParamsData) -> Result<()> {
        let content = HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        let value = Value {
            tag: tag.into(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "hparams".into(),
                    content,
                }),
                ..Default::default()
            }),
            kind: None,
        };
        self.summary(step, super::now(), vec![value])
    }

    /// Hands what is buffered to the OS, so TensorBoard sees it (called every step).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// The scalars of one metrics line: every number in it, under TensorBoard tags grouped
/// by subject (`loss/D`, `swd/ema`, `class/arcs/diversity`, …). Numbers a newer metrics
/// line gains appear under their JSON name, so none is left out.
pub fn scalars_of(m: &Metric) -> Vec<(String, f64)> {
    let json = serde_json::to_value(m).unwrap_or_default();
    let mut out = vec![];
    let Some(fields) = json.as_object() else {
        return out;
    };
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("step" | "time", _) => {}
            ("classes", serde_json::Value::Array(classes)) => {
                for class in classes {
                    let name = class["name"].as_str().unwrap_or("?");
                    for (field, v) in class.as_object().into_iter().flatten() {
                        if let Some(v) = v.as_f64() {
                            out.push((format!("class/{name}/{field}"), v));
                        }
                    }
                }
            }
            (key, value) => {
                if let Some(v) = value.as_f64() {
                    out.push((scalar_tag(key).to_string(), v));
                }
            }
        }
    }
    out
}

fn scalar_tag(key: &str) -> &str {
    match key {
        "d_loss" => "loss/D",
        "g_loss" => "loss/G",
        "d_real" => "D/real",
        "d_fake" => "D/fake",
        "lr_g" => "lr/G",
        "lr_d" => "lr/D",
        "imgs_per_s" => "speed/images_per_s",
        "epoch" => "data/epoch",
        "aug_p" => "augment/p",
        "swd" => "swd/ema",
        "swd_raw" => "swd/raw",
        "style_ambiguity" => "can/style_ambiguity",
        "reconstruction" => "vae/reconstruction",
        "kl" => "vae/kl",
        "g_grad_norm" => "grad/G_norm",
        other => other,
    }
}

fn flatten_hparams(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, HParamValue>) {
    use serde_json::Value as J;
    let kind = match v {
        J::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_hparams(&key, v, out);
            }
            return;
        }
        J::Null => return,
        J::Bool(b) => HParamKind::Bool(*b),
        J::Number(n) => HParamKind::Number(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => HParamKind::String(s.clone()),
        J::Array(_) => HParamKind::String(v.to_string()),
    };
    out.insert(prefix.to_string(), HParamValue { kind: Some(kind) });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(step: u64) -> Metric {
        Metric {
            step,
            d_loss: 0.5 + step as f64,
            time: 1000.0 + step as f64,
            ..Default::default()
        }
    }

    fn steps(dir: &Path) -> Vec<i64> {
        let files = event_files(dir);
        assert_eq!(files.len(), 1, "{files:?}");
        read_records(&files[0])
            .unwrap()
            .events
            .iter()
            .filter(|e| matches!(&e.what, Some(What::Summary(s)) if s.value.iter().any(|v| v.tag == "loss/D")))
            .map(|e| e.step)
            .collect()
    }

    #[test]
    fn the_masked_crc_is_tensorflows() {
        // Values from the tensorboard package's own masked_crc32c.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        // The first record of an event file: "brain.Event:2" at step 0, wall time 0, is a
        // 15-byte payload.
        let record = encode_record(&Event {
            wall_time: 0.0,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        });
        assert_eq!(&record[..8], &15u64.to_le_bytes());
        assert_eq!(&record[8..12], &0x092b_536du32.to_le_bytes());
    }

    #[test]
    fn records_read_back_and_a_flipped_byte_is_an_error_naming_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        for s in 1..=3 {
            w.metric(&metric(s)).unwrap();
        }
        w.flush().unwrap();
        let file = &event_files(dir.path())[0];
        let records = read_records(file).unwrap();
        assert!(!records.torn_tail);
        assert_eq!(records.events.len(), 4, "version record and three metrics");
        let Some(What::Summary(s)) = &records.events[2].what else {
            panic!("{:?}", records.events[2]);
        };
        let d = s.value.iter().find(|v| v.tag == "loss/D").unwrap();
        assert_eq!(d.kind, Some(Kind::SimpleValue(2.5)));
        assert_eq!(records.events[2].wall_time, 1002.0);

        let mut bytes = std::fs::read(file).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(file, &bytes).unwrap();
        let err = read_records(file).unwrap_err().to_string();
        assert!(err.contains("bad data CRC in the record at byte"), "{err}");
    }

    #[test]
    fn a_resume_drops_later_steps_and_a_torn_record_then_continues_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        for s in 1..=6 {
            w.metric(&metric(s)).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        // A writer killed mid-record leaves half a record at the end.
        let file = event_files(dir.path()).remove(0);
        let half = encode_record(&Event {
            step: 7,
            ..Default::default()
        });
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&half[..half.len() / 2]).unwrap();
        assert!(read_records(&file).unwrap().torn_tail);

        let mut w = EventWriter::resume(dir.path(), Some(4)).unwrap();
        w.hparams(5, &serde_json::json!({"steps": 10})).unwrap();
        for s in 5..=8 {
            w.metric(&metric(s)).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(steps(dir.path()), (1..=8).collect::<Vec<_>>());
        let records = read_records(&file).unwrap();
        assert!(!records.torn_tail);
        let start = records
            .events
            .iter()
            .find(|e| matches!(e.what, Some(What::SessionLog(_))))
            .unwrap();
        assert_eq!(
            start.step, 5,
            "TensorBoard's restart marker at the first new step"
        );
        // One hparams session per run however often it resumes (TensorBoard reads the
        // first only).
        let mut w = EventWriter::resume(dir.path(), Some(8)).unwrap();
        w.hparams(9, &serde_json::json!({"steps": 20})).unwrap();
        w.flush().unwrap();
        let sessions = read_records(&file)
            .unwrap()
            .events
            .iter()
            .filter(|e| is_session_info(e))
            .count();
        assert_eq!(sessions, 1);

        // A new run in the same folder starts afresh.
        let mut w = EventWriter::resume(dir.path(), None).unwrap();
        w.metric(&metric(1)).unwrap();
        w.flush().unwrap();
        assert_eq!(steps(dir.path()), vec![1]);
    }

    #[test]
    fn every_number_of_a_metrics_line_is_a_scalar() {
        let m = Metric {
            step: 3,
            swd: Some(12.0),
            classes: vec![super::super::ClassScore {
                name: "arcs".into(),
                swd: 5.0,
                diversity: 0.9,
                fidelity: Some(1.0),
            }],
            ..metric(3)
        };
        let tags: Vec<String> = scalars_of(&m).into_iter().map(|(t, _)| t).collect();
        for want in [
            "loss/D",
            "loss/G",
            "D/real",
            "D/fake",
            "lr/G",
            "lr/D",
            "speed/images_per_s",
            "data/epoch",
            "swd/ema",
            "class/arcs/swd",
            "class/arcs/diversity",
            "class/arcs/fidelity",
        ] {
            assert!(
                tags.iter().any(|t| t == want),
                "{want} missing from {tags:?}"
            );
        }
        assert!(!tags.iter().any(|t| t == "step" || t == "time"));
    }

    #[test]
    fn hparams_flatten_nested_keys_and_keep_their_types() {
        let mut out = BTreeMap::new();
        let keys = serde_json::json!({"lr": 0.002, "data": {"folder": "x"}, "mirror": true, "g_widths": [8, 4]});
        flatten_hparams("", &keys, &mut out);
        assert_eq!(out["lr"].kind, Some(HParamKind::Number(0.002)));
        assert_eq!(
            out["data.folder"].kind,
            Some(HParamKind::String("x".into()))
        );
        assert_eq!(out["mirror"].kind, Some(HParamKind::Bool(true)));
        assert_eq!(
            out["g_widths"].kind,
            Some(HParamKind::String("[8,4]".into()))
        );
    }
}
