//! The few pieces of protobuf that reading and rewriting ONNX graphs takes: a message's fields
//! one by one (every length checked against the bytes left, nothing trusted), and writing
//! fields back. No schema: callers name the field numbers of onnx.proto they need.

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    /// A length-delimited field's bytes (a message or a string).
    pub(crate) fn bytes(&self) -> std::result::Result<&'a [u8], String> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err("a message field holds a number".into()),
        }
    }

    /// A string field.
    pub(crate) fn text(&self) -> std::result::Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a name is not UTF-8".to_string())
    }

    /// Appends the field as `number` to `out`, as it was read.
    pub(crate) fn write(&self, number: u64, out: &mut Vec<u8>) {
        match *self {
            Value::Varint(v) => {
                put_varint(out, number << 3);
                put_varint(out, v);
            }
            Value::Fixed64(v) => {
                put_varint(out, number << 3 | 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Bytes(b) => put_bytes(out, number, b),
            Value::Fixed32(v) => {
                put_varint(out, number << 3 | 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (a message or a string).
pub(crate) fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The top-level fields of one protobuf message.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
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

impl<'a> Fields<'a> {
    /// The numbers of a packed repeated varint field (`bytes` is its value).
    pub(crate) fn packed_varints(
        bytes: &'a [u8],
    ) -> impl Iterator<Item = std::result::Result<u64, String>> + 'a {
        let mut f = Fields::new(bytes);
        std::iter::from_fn(move || (!f.rest.is_empty()).then(|| f.varint()))
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
                0 => Value::Varint(self.varint()?),
                1 => Value::Fixed64(u64::from_le_bytes(
                    self.take(8)?.try_into().expect("8 bytes"),
                )),
                2 => {
                    let n = self.varint()?;
                    Value::Bytes(self.take(n)?)
                }
                5 => Value::Fixed32(u32::from_le_bytes(
                    self.take(4)?.try_into().expect("4 bytes"),
                )),
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
