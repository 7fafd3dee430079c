//! Which operators an ONNX graph holds, read straight from the file's protobuf: `doctor` says
//! what the graph is made of (fused or not) without trusting a record of it.
//!
//! Only the few fields on the path to a node's op type are decoded (ModelProto.graph,
//! GraphProto.node, NodeProto.op_type / domain); every length is checked against the bytes
//! left, and everything else — the initializers' megabytes included — is skipped unread.

use std::collections::BTreeMap;
use std::path::Path;

use super::onnx_proto::Fields;
use crate::error::{Error, Result};

/// Op counts by name; contrib ops are named with their domain (`com.microsoft.BiasGelu`).
pub type OpCounts = BTreeMap<String, usize>;

/// The operators of the graph in `path`, with how many nodes of each it has.
pub fn op_counts(path: &Path) -> Result<OpCounts> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only map of a file frostline does not write while it is mapped here.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    op_counts_in(&bytes)
        .map_err(|what| Error::model(path, format!("not a readable ONNX model: {what}")))
}

/// The operators of the serialized model `bytes`, or what makes them unreadable.
pub(crate) fn op_counts_in(bytes: &[u8]) -> std::result::Result<OpCounts, String> {
    let mut counts = OpCounts::new();
    let mut graphs = 0;
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        if number != 7 {
            continue;
        }
        graphs += 1;
        for node in Fields::new(value.bytes()?) {
            let (number, value) = node?;
            if number != 1 {
                continue;
            }
            let (mut op, mut domain) = (String::new(), String::new());
            for attr in Fields::new(value.bytes()?) {
                let (number, value) = attr?;
                let text = || -> std::result::Result<String, String> {
                    let b = value.bytes()?;
                    String::from_utf8(b.to_vec()).map_err(|_| "an op name is not UTF-8".to_string())
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
        return Err(format!("{graphs} graphs where a model has one"));
    }
    Ok(counts)
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
