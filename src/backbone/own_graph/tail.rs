//! Each encoder layer's row-wise tail as one node, on a graph already on frostline's operators:
//! the attention output's product, its `BiasResidualLayerNorm`, the FFN's product, its GELU,
//! its second product and that `BiasResidualLayerNorm` → `LayerTailF32`; in int8 also the
//! `QuantizeRows` before the first product, with `BiasGeluQuantize` for the GELU →
//! `LayerTailInt8`. A row needs nothing of another row from the attention's output on, so one
//! block of rows runs the whole tail in one task ([`super::super::own_ops`]).
//!
//! Only where every product already runs on frostline's kernel and every value between the
//! nodes feeds the chain alone (a graph output or another reader keeps the nodes as they are).

use std::collections::{HashMap, HashSet};

use super::{put_node, AttrValue, Fields, Node, DOMAIN};

/// A layer tail found: the nodes it replaces (the last, its final norm, is where it is
/// written), its inputs in the fused op's order and the two norms' epsilons.
struct Tail<'a> {
    folded: Vec<usize>,
    op: &'static str,
    inputs: Vec<&'a str>,
    epsilon: (f32, f32),
}

/// The graph's bytes with each layer tail fused, or `None` where it has none.
pub(super) fn fuse_layer_tails(graph_bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut nodes = Vec::new();
    let mut graph_outputs = HashSet::new();
    for field in Fields::new(graph_bytes) {
        let (number, value) = field?;
        match number {
            1 => nodes.push(Node::read(value.bytes()?)?),
            12 => {
                for f in Fields::new(value.bytes()?) {
                    if let (1, v) = f? {
                        graph_outputs.insert(v.text()?);
                    }
                }
            }
            _ => {}
        }
    }
    let (producer, readers) = super::producers_and_readers(&nodes);
    let graph = Chain {
        nodes: &nodes,
        producer,
        readers,
        graph_outputs,
    };
    let tails: HashMap<usize, Tail> = (0..nodes.len())
        .filter_map(|i| Some((i, graph.f32_tail(i).or_else(|| graph.int8_tail(i))?)))
        .collect();
    if tails.is_empty() {
        return Ok(None);
    }
    let folded: HashSet<usize> = tails.values().flat_map(|t| t.folded.clone()).collect();
    let mut out = Vec::with_capacity(graph_bytes.len());
    let mut next = 0;
    for field in Fields::new(graph_bytes) {
        let (number, value) = field?;
        if number != 1 {
            value.write(number, &mut out);
            continue;
        }
        let (at, n) = (next, &nodes[next]);
        next += 1;
        if let Some(t) = tails.get(&at) {
            let name = format!("{}/frostline.layer_tail", n.outputs[0]);
            put_node(
                &mut out,
                &name,
                (DOMAIN, t.op),
                &t.inputs,
                &n.outputs,
                &[
                    ("attention_epsilon", AttrValue::Float(t.epsilon.0)),
                    ("ffn_epsilon", AttrValue::Float(t.epsilon.1)),
                ],
            );
        } else if !folded.contains(&at) {
            super::put_bytes(&mut out, 1, n.bytes);
        }
    }
    Ok(Some(out))
}

/// The graph's nodes and who makes and reads each value.
struct Chain<'g, 'a> {
    nodes: &'g [Node<'a>],
    producer: HashMap<&'a str, usize>,
    readers: HashMap<&'a str, Vec<usize>>,
    graph_outputs: HashSet<&'a str>,
}

impl<'g, 'a> Chain<'g, 'a> {
    /// The node making `v` as its output `output`, when it is frostline's `op` with `inputs`
    /// inputs.
    fn made(&self, v: &str, op: &str, output: usize, inputs: usize) -> Option<&'g Node<'a>> {
        let n = &self.nodes[*self.producer.get(v)?];
        (n.is(DOMAIN, op) && n.outputs.get(output).copied() == Some(v) && n.inputs.len() == inputs)
            .then_some(n)
    }

    /// Whether exactly the nodes `by` read `v` (once each) and it is not a graph output.
    fn read_only_by(&self, v: &str, by: &[&Node]) -> bool {
        let Some(r) = self.readers.get(v) else {
            return false;
        };
        let mut want: Vec<&str> = by.iter().map(|n| n.outputs[0]).collect();
        let mut got: Vec<&str> = r.iter().map(|&i| self.nodes[i].outputs[0]).collect();
        want.sort_unstable();
        got.sort_unstable();
        want == got && !self.graph_outputs.contains(v)
    }

    fn index(&self, n: &Node) -> usize {
        self.producer[n.outputs[0]]
    }

    fn epsilon(n: &Node) -> Option<f32> {
        n.only_attrs(&["epsilon"])?;
        n.attr("epsilon")?.float
    }

    /// The fp32 tail ending in the norm at `i`: `MatMulF32` → `BiasResidualLayerNorm` →
    /// `MatMulF32` → `BiasGelu` → `MatMulF32` → `BiasResidualLayerNorm` (whose residual is the
    /// first norm's output).
    fn f32_tail(&self, i: usize) -> Option<Tail<'a>> {
        let n2 = &self.nodes[i];
        if !n2.is(DOMAIN, "BiasResidualLayerNorm") || n2.inputs.len() != 5 || n2.outputs.len() != 1
        {
            return None;
        }
        let m2 = self.made(n2.inputs[0], "MatMulF32", 0, 2)?;
        let gelu = self.made(m2.inputs[0], "BiasGelu", 0, 2)?;
        let m1 = self.made(gelu.inputs[0], "MatMulF32", 0, 2)?;
        let n1 = self.made(m1.inputs[0], "BiasResidualLayerNorm", 0, 5)?;
        let mo = self.made(n1.inputs[0], "MatMulF32", 0, 2)?;
        let h = n1.outputs[0];
        let chained = n1.outputs.len() == 1
            && n2.inputs[2] == h
            && self.read_only_by(h, &[m1, n2])
            && self.read_only_by(n1.inputs[0], &[n1])
            && self.read_only_by(gelu.inputs[0], &[gelu])
            && self.read_only_by(m2.inputs[0], &[m2])
            && self.read_only_by(n2.inputs[0], &[n2]);
        if !chained {
            return None;
        }
        Some(Tail {
            folded: [mo, n1, m1, gelu, m2].map(|n| self.index(n)).to_vec(),
            op: "LayerTailF32",
            inputs: vec![
                mo.inputs[0],
                n1.inputs[2],
                mo.inputs[1],
                n1.inputs[1],
                n1.inputs[3],
                n1.inputs[4],
                m1.inputs[1],
                gelu.inputs[1],
                m2.inputs[1],
                n2.inputs[1],
                n2.inputs[3],
                n2.inputs[4],
            ],
            epsilon: (Self::epsilon(n1)?, Self::epsilon(n2)?),
        })
    }

    /// The int8 tail ending in the norm at `i`: `QuantizeRows` → `MatMulInt8` →
    /// `BiasResidualLayerNorm` (with its codes) → `MatMulInt8` → `BiasGeluQuantize` →
    /// `MatMulInt8` → `BiasResidualLayerNorm`, each row scale read by the step after its
    /// product.
    fn int8_tail(&self, i: usize) -> Option<Tail<'a>> {
        let n2 = &self.nodes[i];
        let ends = n2.is(DOMAIN, "BiasResidualLayerNorm")
            && n2.inputs.len() == 6
            && matches!(n2.outputs.len(), 1 | 3);
        if !ends {
            return None;
        }
        let m2 = self.made(n2.inputs[0], "MatMulInt8", 0, 5)?;
        let gelu = self.made(m2.inputs[0], "BiasGeluQuantize", 0, 3)?;
        let m1 = self.made(gelu.inputs[0], "MatMulInt8", 0, 5)?;
        let n1 = self.made(m1.inputs[0], "BiasResidualLayerNorm", 1, 6)?;
        let mo = self.made(n1.inputs[0], "MatMulInt8", 0, 5)?;
        let q = self.made(mo.inputs[0], "QuantizeRows", 0, 1)?;
        let h = n1.outputs[0];
        let chained = n1.outputs.len() == 3
            && gelu.outputs.len() == 2
            && q.outputs.len() == 2
            // each product's row scales go to the step after it
            && n1.inputs[5] == q.outputs[1]
            && gelu.inputs[2] == n1.outputs[2]
            && n2.inputs[5] == gelu.outputs[1]
            && n2.inputs[2] == h
            && self.read_only_by(h, &[n2])
            && [
                (q.outputs[0], mo),
                (q.outputs[1], n1),
                (n1.inputs[0], n1),
                (n1.outputs[1], m1),
                (n1.outputs[2], gelu),
                (gelu.inputs[0], gelu),
                (gelu.outputs[0], m2),
                (gelu.outputs[1], n2),
                (n2.inputs[0], n2),
            ]
            .iter()
            .all(|&(v, by)| self.read_only_by(v, &[by]));
        if !chained {
            return None;
        }
        let mut inputs = vec![q.inputs[0], n1.inputs[2]];
        inputs.extend(&mo.inputs[1..]);
        inputs.extend([n1.inputs[1], n1.inputs[3], n1.inputs[4]]);
        inputs.extend(&m1.inputs[1..]);
        inputs.push(gelu.inputs[1]);
        inputs.extend(&m2.inputs[1..]);
        inputs.extend([n2.inputs[1], n2.inputs[3], n2.inputs[4]]);
        Some(Tail {
            folded: [q, mo, n1, m1, gelu, m2].map(|n| self.index(n)).to_vec(),
            op: "LayerTailInt8",
            inputs,
            epsilon: (Self::epsilon(n1)?, Self::epsilon(n2)?),
        })
    }
}
