//! Finds where a key of the sketch's map was written, so that a bad *value* (not a
//! Rhai error) can still be reported with its line and column.

use rhai::{ASTNode, Expr, Position, AST};

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    key_pos: Position,
    value_pos: Position,
    /// The value as text when it is a literal (string, number, bool).
    literal: Option<String>,
}

/// Positions of every `key: value` written in a map literal anywhere in the script.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    entries: Vec<Entry>,
}

impl Locator {
    pub fn from_ast(ast: &AST) -> Self {
        let mut entries = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(Expr::Map(map, pos))) = path.last() {
                // The knobs' declaration (`params: #{ tile: [8, 64, 32] }`) names keys
                // that the sketch's map uses too (`tile: params.tile`): a bad `tile`
                // is the sketch's, so its declaration is left out.
                if is_params_declaration(path, *pos) {
                    return true;
                }
                for (ident, value) in map.0.iter() {
                    entries.push(Entry {
                        key: ident.name.to_string(),
                        key_pos: ident.pos,
                        value_pos: value.position(),
                        literal: literal_text(value),
                    });
                }
            }
            true
        });
        entries.sort_by_key(|e| (e.key_pos.line(), e.key_pos.position()));
        Locator { entries }
    }

    /// Where the value of `key` was written. When several maps use the key, prefer the
    /// one whose literal value matches `value` (the one that is wrong).
    pub fn value(&self, key: &str, value: Option<&str>) -> Position {
        let mut candidates = self.entries.iter().filter(|e| e.key == key);
        let first = candidates.clone().next();
        let exact = value.and_then(|v| candidates.find(|e| e.literal.as_deref() == Some(v)));
        exact
            .or(first)
            .map(|e| {
                if e.value_pos.is_none() {
                    e.key_pos
                } else {
                    e.value_pos
                }
            })
            .unwrap_or(Position::NONE)
    }

    /// Where `key` itself was written (for unknown keys).
    pub fn key(&self, key: &str) -> Position {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.key_pos)
            .unwrap_or(Position::NONE)
    }
}

/// Whether the map at `pos`, the last node of `path`, is the value of a `params:` key.
fn is_params_declaration(path: &[ASTNode], pos: Position) -> bool {
    let Some(ASTNode::Expr(Expr::Map(parent, _))) = path.len().checked_sub(2).map(|i| &path[i])
    else {
        return false;
    };
    parent
        .0
        .iter()
        .any(|(ident, value)| ident.name == "params" && value.position() == pos)
}

fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::StringConstant(s, _) => Some(s.to_string()),
        Expr::IntegerConstant(i, _) => Some(i.to_string()),
        Expr::FloatConstant(f, _) => Some(f.to_string()),
        Expr::BoolConstant(b, _) => Some(b.to_string()),
        Expr::DynamicConstant(d, _) => Some(d.to_string()),
        _ => None,
    }
}
