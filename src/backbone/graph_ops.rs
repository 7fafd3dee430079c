//! Which operators an ONNX graph holds, read straight from the file's protobuf: `doctor` says
//! what the graph is made of (fused or not) without trusting a record of it.
//!
//! Only the few fields on the path to a node's op type are decoded (ModelProto.graph,
//! GraphProto.node, NodeProto.op_type / domain); every length is checked against the bytes
//! left, and everything else — the initializers' megabytes included — is skipped unread.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// Op counts by name; contrib ops are named with their domain (`com.microsoft.BiasGelu`).
pub type OpCounts = BTreeMap<String, usize>;

/// The operators of the graph in `path`, with how many nodes of each it has.
pub fn op_counts(path: &Path) -> Result<OpCounts> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only map of a file frostline does not write while it is mapped here.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |what: String| Error::model(path, format!("not a readable ONNX model: {what}"));
    let mut counts = OpCounts::new();
    let mut graphs = 0;
    for field in Fields::new(&bytes) {
        let (number, value) = field.map_err(bad)?;
        if number != 7 {
            continue;
        }
        graphs += 1;
        for node in Fields::new(value.bytes().map_err(bad)?) {
            let (number, value) = node.map_err(bad)?;
            if number != 1 {
                continue;
            }
            let (mut op, mut domain) = (String::new(), String::new());
            for attr in Fields::new(value.bytes().map_err(bad)?) {
                let (number, value) = attr.map_err(bad)?;
                let text = || -> Result<String> {
                    let b = value.bytes().map_err(bad)?;
                    String::from_utf8(b.to_vec()).map_err(|_| bad("an op name is not UTF-8".into()))
                };
                match number {
                    4 => op = text()?,
                    7 => domain = text()?,
                    _ => {}
                }
            }
            let name = match domain.as_str() {
                "" | "ai.onnx" => op,
                d => format!("{d}.{op}"),
            };
            *counts.entry(name).or_default() += 1;
        }
    }
    if graphs != 1 {
        return Err(bad(format!("{graphs} graphs where a model has one")));
    }
    Ok(counts)
}

/// One field's value: a varint or fixed number (skipped), or length-delimited bytes.
enum Value<'a> {
    Number,
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    fn bytes(&self) -> std::result::Result<&'a [u8], String> {
        match self {
            Value::Bytes(b) => Ok(b),
            Value::Number => Err("a message field holds a number".into()),
        }
    }
}

/// The top-level fields of one protobuf message.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .rest
                .split_first()
                .ok_or("the file ends inside a number")?;
            self.rest = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> std::result::Result<&'a [u8], String> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.rest.len())
            .ok_or_else(|| format!("a field of {n} bytes where {} are left", self.rest.len()))?;
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => self.varint().map(|_| Value::Number)?,
                1 => self.take(8).map(|_| Value::Number)?,
                2 => {
                    let n = self.varint()?;
                    Value::Bytes(self.take(n)?)
                }
                5 => self.take(4).map(|_| Value::Number)?,
                w => return Err(format!("wire type {w} (groups are not ONNX)")),
            };
            Ok((key >> 3, value))
        })();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    fn node(op: &str, domain: &str) -> Vec<u8> {
        let mut n = field(1, b"x");
        n.extend(field(4, op.as_bytes()));
        if !domain.is_empty() {
            n.extend(field(7, domain.as_bytes()));
        }
        field(1, &n)
    }

    #[test]
    fn nodes_are_counted_by_domain_and_op_and_damage_is_named() {
        let mut graph = node("MatMul", "");
        graph.extend(node("MatMul", ""));
        graph.extend(node("BiasGelu", "com.microsoft"));
        graph.extend([5 << 3, 0x80, 0x01]); // a varint field (number 5) is skipped
        let mut model = vec![1 << 3, 8]; // ir_version = 8
        model.extend(field(7, &graph));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &model).unwrap();
        let counts = op_counts(&path).unwrap();
        assert_eq!(counts.get("MatMul"), Some(&2));
        assert_eq!(counts.get("com.microsoft.BiasGelu"), Some(&1));
        assert_eq!(counts.len(), 2);

        // A length past the end, and a file with no graph.
        let mut cut = model.clone();
        cut.truncate(model.len() - 3);
        std::fs::write(&path, &cut).unwrap();
        let err = op_counts(&path).unwrap_err().to_string();
        assert!(
            err.contains("m.onnx") && err.contains("bytes where"),
            "{err}"
        );
        std::fs::write(&path, [1 << 3, 8]).unwrap();
        let err = op_counts(&path).unwrap_err().to_string();
        assert!(err.contains("0 graphs"), "{err}");
    }
}
