//! The ETF subset of docs/PROTOCOL.md §9.4: a bounded decoder (no panic, no allocation larger
//! than the input or [`MAX_DECOMPRESSED_BYTES`], depth ≤ [`MAX_TERM_DEPTH`], at most
//! [`MAX_TERMS`] terms), the `data` → JSON mapping, and the encoder used by
//! `sign_phoenix_token`.

use std::io::Read;

use serde_json::{Map, Number, Value};

/// Deepest ETF nesting accepted in a Phoenix.Token payload (the payload tuple is level 1).
pub const MAX_TERM_DEPTH: usize = 64;
/// Most terms one Phoenix.Token payload may hold (charlist elements count one each).
pub const MAX_TERMS: usize = 100_000;
/// Largest uncompressed size a `COMPRESSED` (tag 80) payload may declare.
pub const MAX_DECOMPRESSED_BYTES: usize = 1024 * 1024;

/// A payload outside the accepted subset (the token is then `TokenError::Invalid`).
pub(super) struct Bad;

pub const VERSION: u8 = 131;
pub const COMPRESSED: u8 = 80;
pub const NEW_FLOAT: u8 = 70;
pub const SMALL_INTEGER: u8 = 97;
pub const INTEGER: u8 = 98;
pub const ATOM: u8 = 100;
pub const SMALL_TUPLE: u8 = 104;
pub const LARGE_TUPLE: u8 = 105;
pub const NIL: u8 = 106;
pub const STRING: u8 = 107;
pub const LIST: u8 = 108;
pub const BINARY: u8 = 109;
pub const SMALL_BIG: u8 = 110;
pub const LARGE_BIG: u8 = 111;
pub const SMALL_ATOM: u8 = 115;
pub const MAP: u8 = 116;
pub const ATOM_UTF8: u8 = 118;
pub const SMALL_ATOM_UTF8: u8 = 119;

#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    /// Any integer whose magnitude fits 127 bits (larger bignums are refused).
    Int(i128),
    Float(f64),
    Atom(String),
    Binary(Vec<u8>),
    /// Proper lists only (charlists are expanded to `Int`s).
    List(Vec<Term>),
    Tuple(Vec<Term>),
    Map(Vec<(Term, Term)>),
}

/// Decodes `131, term` or `131, 80, size, zlib(term)`. Bytes after the term are ignored
/// (as `binary_to_term/1` does).
pub fn decode(bytes: &[u8]) -> Result<Term, Bad> {
    let [VERSION, rest @ ..] = bytes else { return Err(Bad) };
    if let [COMPRESSED, a, b, c, d, stream @ ..] = rest {
        let size = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        if size > MAX_DECOMPRESSED_BYTES {
            return Err(Bad);
        }
        let mut out = Vec::with_capacity(size);
        flate2::read::ZlibDecoder::new(stream).take(size as u64 + 1).read_to_end(&mut out).map_err(|_| Bad)?;
        if out.len() != size {
            return Err(Bad);
        }
        return Reader { buf: &out, pos: 0, budget: MAX_TERMS }.term(1);
    }
    Reader { buf: rest, pos: 0, budget: MAX_TERMS }.term(1)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Terms left to decode before the payload counts as hostile.
    budget: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes, if there are that many (checked before anything is allocated).
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if n > self.remaining() {
            return Err(Bad);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, Bad> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize, Bad> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn spend(&mut self, n: usize) -> Result<(), Bad> {
        self.budget = self.budget.checked_sub(n).ok_or(Bad)?;
        Ok(())
    }

    /// A claimed element count is plausible only if the input left can hold that many
    /// elements of at least `min_bytes` each, and the term budget can too.
    fn plausible(&self, n: usize, min_bytes: usize) -> Result<(), Bad> {
        match n.checked_mul(min_bytes) {
            Some(b) if b <= self.remaining() && n <= self.budget => Ok(()),
            _ => Err(Bad),
        }
    }

    pub fn term(&mut self, depth: usize) -> Result<Term, Bad> {
        if depth > MAX_TERM_DEPTH {
            return Err(Bad);
        }
        self.spend(1)?;
        Ok(match self.u8()? {
            SMALL_INTEGER => Term::Int(i128::from(self.u8()?)),
            INTEGER => {
                let b = self.take(4)?;
                Term::Int(i128::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            }
            SMALL_BIG => {
                let n = self.u8()? as usize;
                self.big(n)?
            }
            LARGE_BIG => {
                let n = self.u32()?;
                self.big(n)?
            }
            NEW_FLOAT => {
                let b = self.take(8)?;
                Term::Float(f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            BINARY => {
                let n = self.u32()?;
                Term::Binary(self.take(n)?.to_vec())
            }
            SMALL_ATOM_UTF8 => {
                let n = self.u8()? as usize;
                self.utf8_atom(n)?
            }
            ATOM_UTF8 => {
                let n = self.u16()?;
                self.utf8_atom(n)?
            }
            SMALL_ATOM => {
                let n = self.u8()? as usize;
                Term::Atom(self.take(n)?.iter().map(|&b| char::from(b)).collect())
            }
            ATOM => {
                let n = self.u16()?;
                Term::Atom(self.take(n)?.iter().map(|&b| char::from(b)).collect())
            }
            SMALL_TUPLE => {
                let n = self.u8()? as usize;
                Term::Tuple(self.elements(n, depth)?)
            }
            LARGE_TUPLE => {
                let n = self.u32()?;
                Term::Tuple(self.elements(n, depth)?)
            }
            NIL => Term::List(Vec::new()),
            STRING => {
                let n = self.u16()?;
                let bytes = self.take(n)?;
                self.spend(n)?;
                Term::List(bytes.iter().map(|&b| Term::Int(i128::from(b))).collect())
            }
            LIST => {
                let n = self.u32()?;
                let items = self.elements(n, depth)?;
                // Only proper lists: the tail must be NIL_EXT.
                if self.u8()? != NIL {
                    return Err(Bad);
                }
                Term::List(items)
            }
            MAP => {
                let n = self.u32()?;
                self.plausible(n, 2)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.term(depth + 1)?;
                    let v = self.term(depth + 1)?;
                    pairs.push((k, v));
                }
                Term::Map(pairs)
            }
            // Pids, ports, refs, funs, LOCAL_EXT, bitstrings, old floats, atom cache refs,
            // a nested COMPRESSED, anything unknown.
            _ => return Err(Bad),
        })
    }

    fn elements(&mut self, n: usize, depth: usize) -> Result<Vec<Term>, Bad> {
        self.plausible(n, 1)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.term(depth + 1)?);
        }
        Ok(items)
    }

    fn utf8_atom(&mut self, n: usize) -> Result<Term, Bad> {
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| Bad)?;
        Ok(Term::Atom(s.to_owned()))
    }

    /// sign byte, then `n` little-endian magnitude bytes.
    fn big(&mut self, n: usize) -> Result<Term, Bad> {
        let sign = self.u8()?;
        let digits = self.take(n)?;
        let significant = digits.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if significant > 16 {
            return Err(Bad);
        }
        let magnitude = digits[..significant].iter().rev().fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
        match sign {
            0 => i128::try_from(magnitude).map(Term::Int).map_err(|_| Bad),
            1 => i128::try_from(magnitude).map(|m| Term::Int(-m)).map_err(|_| Bad),
            _ => Err(Bad),
        }
    }
}

/// `data` → JSON (see the module docs for the mapping).
pub fn to_json(term: Term) -> Result<Value, Bad> {
    Ok(match term {
        Term::Int(i) => {
            if let Ok(i) = i64::try_from(i) {
                Value::Number(i.into())
            } else if let Ok(u) = u64::try_from(i) {
                Value::Number(u.into())
            } else {
                return Err(Bad);
            }
        }
        Term::Float(f) => Value::Number(Number::from_f64(f).ok_or(Bad)?),
        Term::Atom(a) => match a.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "nil" => Value::Null,
            _ => Value::String(a),
        },
        Term::Binary(b) => Value::String(String::from_utf8(b).map_err(|_| Bad)?),
        Term::List(items) | Term::Tuple(items) => Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Term::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let k = match k {
                    Term::Atom(a) => a,
                    Term::Binary(b) => String::from_utf8(b).map_err(|_| Bad)?,
                    Term::Int(i) => i.to_string(),
                    _ => return Err(Bad),
                };
                m.insert(k, to_json(v)?);
            }
            Value::Object(m)
        }
    })
}

pub fn encode_int(i: i128, out: &mut Vec<u8>) {
    if (0..=255).contains(&i) {
        out.extend([SMALL_INTEGER, i as u8]);
    } else if let Ok(i) = i32::try_from(i) {
        out.push(INTEGER);
        out.extend(i.to_be_bytes());
    } else {
        let magnitude = i.unsigned_abs().to_le_bytes();
        let n = magnitude.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        out.extend([SMALL_BIG, n as u8, u8::from(i < 0)]);
        out.extend(&magnitude[..n]);
    }
}

pub fn encode_atom(a: &str, out: &mut Vec<u8>) {
    // Atoms are at most 255 characters; only fixed short names are encoded here.
    out.extend([SMALL_ATOM_UTF8, a.len() as u8]);
    out.extend(a.as_bytes());
}

fn encode_binary(b: &[u8], out: &mut Vec<u8>) {
    out.push(BINARY);
    out.extend((b.len() as u32).to_be_bytes());
    out.extend(b);
}

pub fn encode_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => encode_atom("nil", out),
        Value::Bool(true) => encode_atom("true", out),
        Value::Bool(false) => encode_atom("false", out),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                encode_int(i128::from(i), out);
            } else if let Some(u) = n.as_u64() {
                encode_int(i128::from(u), out);
            } else {
                out.push(NEW_FLOAT);
                out.extend(n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => encode_binary(s.as_bytes(), out),
        Value::Array(items) if items.is_empty() => out.push(NIL),
        Value::Array(items) => {
            out.push(LIST);
            out.extend((items.len() as u32).to_be_bytes());
            for item in items {
                encode_json(item, out);
            }
            out.push(NIL);
        }
        Value::Object(m) => {
            out.push(MAP);
            out.extend((m.len() as u32).to_be_bytes());
            for (k, v) in m {
                encode_binary(k.as_bytes(), out);
                encode_json(v, out);
            }
        }
    }
}
