//! [`Name`]: one shared copy of a short, often repeated string (a class
//! name, a model name, a strategy, a template hash, the key or rule that
//! decided).
//!
//! A 200,000-sample project repeats the same few dozen such strings
//! millions of times: as `String`s each is a 24-byte header plus its own
//! allocation. A `Name` is one 8-byte pointer to the one interned copy
//! ([`intern`]) (an `Arc<str>` would be a 16-byte fat pointer: it sits in
//! every sample's label, verdict, confidence entry and decision), and it
//! reads and writes the same JSON as a string.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most distinct names [`intern`] keeps; beyond that (a hand-edited or
/// hostile journal) names are allocated one by one, never hoarded.
const INTERN_MAX: usize = 4096;

/// Longest string [`intern`] keeps: names are short; a long one (a rule's
/// text, a reason) is allocated on its own instead of filling the table.
const INTERN_MAX_LEN: usize = 128;

/// The shared text of a [`Name`]: a thin pointer (`Box<str>` behind the
/// `Arc`), so a name is 8 bytes and `Option<Name>` too.
type Shared = Arc<Box<str>>;

/// A [`Shared`] as a set key, looked up by `&str`.
#[derive(PartialEq, Eq, Hash)]
struct Key(Shared);

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

fn own(s: &str) -> Shared {
    Arc::new(Box::from(s))
}

/// The one shared copy of a short, often repeated name (a class name).
///
/// Each thread looks in its own table first, so replaying a journal on
/// one thread while folding on another takes no lock per name.
pub fn intern(s: &str) -> Name {
    Name(intern_text(s))
}

fn intern_text(s: &str) -> Shared {
    thread_local! {
        static LOCAL: RefCell<HashSet<Key, BuildHasherDefault<NameHasher>>> =
            RefCell::new(HashSet::default());
    }
    if s.len() > INTERN_MAX_LEN {
        return own(s);
    }
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        if let Some(a) = local.get(s) {
            return a.0.clone();
        }
        let a = intern_shared(s);
        if local.len() < INTERN_MAX {
            local.insert(Key(a.clone()));
        }
        a
    })
}

/// FNV-1a: names are short and the table is ours (no untrusted keys
/// choose the buckets of anything that matters: a full table stops
/// growing, see [`INTERN_MAX`]); SipHash was a tenth of replay.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

fn intern_shared(s: &str) -> Shared {
    static NAMES: OnceLock<Mutex<HashSet<Key>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = names.get(s) {
        return a.0.clone();
    }
    let a = own(s);
    if names.len() < INTERN_MAX {
        names.insert(Key(a.clone()));
    }
    a
}

/// An interned string (see the module docs). Compares, hashes, orders,
/// prints and serializes like the `str` it holds.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Name(Shared);

impl std::hash::Hash for Name {
    /// Like the `str` (a `Name` is looked up by `&str` in sets).
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialEq for Name {
    /// Interned names are equal when they are one copy; other names (long
    /// ones, past the table's cap) compare by text.
    fn eq(&self, o: &Name) -> bool {
        Arc::ptr_eq(&self.0, &o.0) || **self.0 == **o.0
    }
}

impl Name {
    pub fn new(s: &str) -> Name {
        intern(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether two names share one copy (interned).
    pub fn ptr_eq(a: &Name, b: &Name) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Default for Name {
    /// The empty name.
    fn default() -> Name {
        Name::new("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::new(&s)
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name::new(s)
    }
}

impl From<&Name> for Name {
    fn from(s: &Name) -> Name {
        s.clone()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, o: &String) -> bool {
        self.as_str() == o.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, o: &Name) -> bool {
        self == o.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, o: &Name) -> bool {
        *self == o.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, o: &Name) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    /// Read straight into the interned copy (no `String` on the way).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Name, E> {
                Ok(Name::new(s))
            }
        }
        d.deserialize_str(V)
    }
}

/// A rare string kept by a value held per sample (a verdict's raw answer
/// or request id): 8 bytes, so `Option<ThinStr>` too, where a `Box<str>`
/// is 16. Not interned (each is its own); reads like the `str` it holds
/// and reads and writes the same JSON.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThinStr(Box<Box<str>>);

impl ThinStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ThinStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ThinStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ThinStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ThinStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<&str> for ThinStr {
    fn from(s: &str) -> ThinStr {
        ThinStr(Box::new(Box::from(s)))
    }
}

impl From<String> for ThinStr {
    fn from(s: String) -> ThinStr {
        ThinStr(Box::new(s.into_boxed_str()))
    }
}

impl From<Box<str>> for ThinStr {
    fn from(s: Box<str>) -> ThinStr {
        ThinStr(Box::new(s))
    }
}

impl From<ThinStr> for String {
    fn from(s: ThinStr) -> String {
        (*s.0).into()
    }
}

impl PartialEq<str> for ThinStr {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for ThinStr {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl Serialize for ThinStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ThinStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ThinStr, D::Error> {
        Ok(ThinStr::from(String::deserialize(d)?))
    }
}

/// Deserialize a list of names into a vector of exactly its length (serde
/// grows a vector from a JSON array to room for four, and a mix request's
/// provenance lists two classes: half the allocation unused, per sample).
pub fn exact_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Name>, D::Error> {
    let mut v = Vec::<Name>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_copy_across_threads() {
        let a = Name::from("gpt-4o-mini");
        let b: Name = serde_json::from_str(r#""gpt-4o-mini""#).unwrap();
        assert!(Name::ptr_eq(&a, &b));
        let c = std::thread::spawn(|| Name::from(String::from("gpt-4o-mini")))
            .join()
            .unwrap();
        assert!(Name::ptr_eq(&a, &c));
        assert!(!Name::ptr_eq(&a, &Name::from("gpt-4o")));
    }

    #[test]
    fn behaves_like_the_string_it_holds() {
        let n = Name::from("ENTY");
        assert_eq!(n, "ENTY");
        assert_eq!("ENTY", n);
        assert_eq!(n, String::from("ENTY"));
        assert_eq!(format!("{n} {n:?}"), r#"ENTY "ENTY""#);
        assert_eq!(serde_json::to_string(&n).unwrap(), r#""ENTY""#);
        // Escapes are read like a string's.
        let e: Name = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(e, "a\"b");
        let abbr = Name::from("ABBR");
        assert!(abbr < n, "orders like the string");
        let set: HashSet<Name> = [n.clone()].into();
        assert!(set.contains("ENTY"));
    }

    #[test]
    fn provenance_classes_and_confidences_are_allocated_at_their_size() {
        let p: crate::domain::Provenance =
            serde_json::from_str(r#"{"strategy":"mix","classes":["HUM","ENTY"],"minor":"ENTY"}"#)
                .unwrap();
        assert_eq!(p.classes, ["HUM", "ENTY"]);
        assert_eq!(p.classes.capacity(), 2);
        assert!(Name::ptr_eq(p.minor.as_ref().unwrap(), &p.classes[1]));
        let c: crate::domain::Confidence =
            serde_json::from_str(r#"{"LOC":0.2,"HUM":0.5,"DESC":0.3}"#).unwrap();
        assert_eq!(c.keys().collect::<Vec<_>>(), ["DESC", "HUM", "LOC"]);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"strategy":"mix","classes":["HUM","ENTY"],"minor":"ENTY"}"#
        );
    }

    #[test]
    fn a_name_is_one_thin_pointer() {
        assert_eq!(std::mem::size_of::<Name>(), 8);
        assert_eq!(std::mem::size_of::<Option<Name>>(), 8);
        assert_eq!(std::mem::size_of::<Option<ThinStr>>(), 8);
        let t: ThinStr = serde_json::from_str(r#""r-1\"x""#).unwrap();
        assert_eq!(t, "r-1\"x");
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""r-1\"x""#);
        assert_eq!(format!("{t} {t:?}"), r#"r-1"x "r-1\"x""#);
    }

    #[test]
    fn long_strings_are_not_kept_in_the_table() {
        let long = "x".repeat(INTERN_MAX_LEN + 1);
        let (a, b) = (Name::from(long.as_str()), Name::from(long.as_str()));
        assert_eq!(a, b);
        assert!(!Name::ptr_eq(&a, &b));
    }
}
