use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A cache key: an integer, a string or bytes.
///
/// Keys of different kinds never compare equal (`1` is not `"1"`), and they
/// order as SQLite orders them: integers numerically, then strings, then
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A cached value: an integer, a string or bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Key {
    /// A 64-bit FNV-1a hash of the key's kind and contents: unlike `std`'s
    /// randomly keyed hasher it is the same in every process and every run,
    /// so all processes agree on a key's shard.
    pub fn stable_hash(&self) -> u64 {
        let (tag, bytes): (u8, &[u8]) = match self {
            Key::Int(i) => return fnv1a(0, &i.to_le_bytes()),
            Key::Text(s) => (1, s.as_bytes()),
            Key::Bytes(b) => (2, b),
        };
        fnv1a(tag, bytes)
    }
}

fn fnv1a(tag: u8, bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    std::iter::once(&tag)
        .chain(bytes)
        .fold(OFFSET, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Text(s) => write!(f, "{s:?}"),
            Key::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
        }
    }
}

macro_rules! impl_from {
    ($target:ident: $($source:ty => $variant:ident($convert:expr)),* $(,)?) => {
        $(impl From<$source> for $target {
            fn from(value: $source) -> Self {
                $target::$variant($convert(value))
            }
        })*
    };
}

impl_from!(Key:
    i64 => Int(|v| v),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    &str => Text(str::to_owned),
    String => Text(|v| v),
    &[u8] => Bytes(<[u8]>::to_vec),
    Vec<u8> => Bytes(|v| v),
);
impl_from!(Value:
    i64 => Int(|v| v),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    &str => Text(str::to_owned),
    String => Text(|v| v),
    &[u8] => Bytes(<[u8]>::to_vec),
    Vec<u8> => Bytes(|v| v),
);

impl Value {
    /// The integer, if this value is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

macro_rules! impl_to_sql {
    ($($type:ident),*) => {
        $(impl ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(match self {
                    $type::Int(i) => ValueRef::Integer(*i),
                    $type::Text(s) => ValueRef::Text(s.as_bytes()),
                    $type::Bytes(b) => ValueRef::Blob(b),
                }))
            }
        })*
    };
}

impl_to_sql!(Key, Value);

fn text(bytes: &[u8]) -> FromSqlResult<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| FromSqlError::Other(Box::new(e)))
}

impl FromSql for Key {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Integer(i) => Ok(Key::Int(i)),
            ValueRef::Text(s) => text(s).map(Key::Text),
            ValueRef::Blob(b) => Ok(Key::Bytes(b.to_vec())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

impl FromSql for Value {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Integer(i) => Ok(Value::Int(i)),
            ValueRef::Text(s) => text(s).map(Value::Text),
            ValueRef::Blob(b) => Ok(Value::Bytes(b.to_vec())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fixed_and_kind_sensitive() {
        // Pinned values: a change here would reshuffle every existing fanout cache.
        assert_eq!(Key::Int(0).stable_hash(), Key::from(0).stable_hash());
        assert_ne!(Key::Int(1).stable_hash(), Key::from("1").stable_hash());
        assert_ne!(
            Key::from("a").stable_hash(),
            Key::from(&b"a"[..]).stable_hash()
        );
        assert_eq!(Key::from("").stable_hash(), fnv1a(1, b""));
        assert_eq!(fnv1a(0, b""), 0xaf63_bd4c_8601_b7df);
    }

    #[test]
    fn keys_order_like_sqlite() {
        let mut keys = vec![
            Key::from("b"),
            Key::from(&b"a"[..]),
            Key::from(10),
            Key::from(-3),
            Key::from("a"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                Key::from(-3),
                Key::from(10),
                Key::from("a"),
                Key::from("b"),
                Key::from(&b"a"[..])
            ]
        );
    }
}
