//! A verdict's confidence per class, kept small: one sorted vector of
//! (interned class name, confidence) instead of a `BTreeMap<String, f64>`.
//!
//! A project of 200,000 relabelled samples holds 200,000 of these. A
//! B-tree allocates a whole node (room for 11 entries, ≈ 370 bytes) plus
//! one `String` per class for even a three-class verdict; this is one
//! allocation of 16 bytes per class, and the class names are shared (see
//! [`intern`]). It reads and writes the same JSON (a map in key order).

use super::name::{Name, intern};
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Confidence per class, in class-name order (like the map it replaces):
/// a slice allocated at its length (no capacity word; changes reallocate,
/// and a verdict is built once).
#[derive(Clone, Default, PartialEq)]
pub struct Confidence(Box<[(Name, f64)]>);

impl Confidence {
    pub fn new() -> Confidence {
        Confidence(Box::new([]))
    }
    fn insert_at(&mut self, i: usize, entry: (Name, f64)) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        v.reserve_exact(1);
        v.insert(i, entry);
        self.0 = v.into_boxed_slice();
    }
    fn find(&self, k: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(k))
    }
    pub fn get(&self, k: &str) -> Option<&f64> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }
    pub fn get_mut(&mut self, k: &str) -> Option<&mut f64> {
        self.find(k).ok().map(|i| &mut self.0[i].1)
    }
    pub fn contains_key(&self, k: &str) -> bool {
        self.find(k).is_ok()
    }
    /// Set `k`'s confidence; returns the previous one.
    pub fn insert(&mut self, k: impl AsRef<str>, v: f64) -> Option<f64> {
        let k = k.as_ref();
        match self.find(k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.insert_at(i, (intern(k), v));
                None
            }
        }
    }
    /// The confidence of `k`, inserted as 0 when absent.
    pub fn entry_or_zero(&mut self, k: &str) -> &mut f64 {
        let i = match self.find(k) {
            Ok(i) => i,
            Err(i) => {
                self.insert_at(i, (intern(k), 0.0));
                i
            }
        };
        &mut self.0[i].1
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// (class, confidence) in class-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &f64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
    pub fn values(&self) -> impl Iterator<Item = &f64> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl fmt::Debug for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Confidence {
    type Output = f64;
    fn index(&self, k: &str) -> &f64 {
        self.get(k).expect("no confidence for that class")
    }
}

impl<K: AsRef<str>> FromIterator<(K, f64)> for Confidence {
    /// Like a map: a class given twice keeps its last confidence.
    fn from_iter<I: IntoIterator<Item = (K, f64)>>(it: I) -> Confidence {
        let mut c: Vec<(Name, f64)> = Vec::new();
        for (k, v) in it {
            let k = k.as_ref();
            match c.binary_search_by(|(n, _)| n.as_str().cmp(k)) {
                Ok(i) => c[i].1 = v,
                Err(i) => c.insert(i, (intern(k), v)),
            }
        }
        Confidence(c.into_boxed_slice())
    }
}

impl<K: AsRef<str>, const N: usize> From<[(K, f64); N]> for Confidence {
    fn from(a: [(K, f64); N]) -> Confidence {
        a.into_iter().collect()
    }
}

impl From<BTreeMap<String, f64>> for Confidence {
    fn from(m: BTreeMap<String, f64>) -> Confidence {
        m.into_iter().collect()
    }
}

impl Serialize for Confidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Confidence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Confidence, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Confidence;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of class to confidence")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Confidence, A::Error> {
                // A JSON map tells no length: gather in a reused buffer
                // and allocate the result once, at its size (growing then
                // shrinking would allocate, copy and free per verdict).
                thread_local! {
                    static SCRATCH: std::cell::RefCell<Vec<(Name, f64)>> =
                        const { std::cell::RefCell::new(Vec::new()) };
                }
                SCRATCH.with(|scratch| {
                    let mut c = scratch.take();
                    c.clear();
                    let read = (|| {
                        while let Some((k, v)) = m.next_entry::<Name, f64>()? {
                            match c.binary_search_by(|(n, _)| n.cmp(&k)) {
                                Ok(i) => c[i].1 = v,
                                Err(i) => c.insert(i, (k, v)),
                            }
                        }
                        Ok(())
                    })();
                    let mut exact = Vec::with_capacity(c.len());
                    exact.append(&mut c);
                    let out = Confidence(exact.into_boxed_slice());
                    scratch.replace(c);
                    read.map(|()| out)
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_json_of_a_map_in_key_order() {
        let c: Confidence = serde_json::from_str(r#"{"LOC":0.25,"HUM":0.5,"LOC":0.3}"#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c["LOC"], 0.3);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"HUM":0.5,"LOC":0.3}"#
        );
        assert_eq!(c.0.len(), 2, "allocated at its size");
        assert_eq!(std::mem::size_of::<Confidence>(), 16);
        assert_eq!(std::mem::size_of::<(Name, f64)>(), 16, "an entry");
        let empty: Confidence = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert!(serde_json::from_str::<Confidence>(r#"{"A":"x"}"#).is_err());
        // A failed read leaves nothing behind for the next one.
        let d: Confidence = serde_json::from_str(r#"{"DESC":1.0}"#).unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["DESC"]);
        let m: BTreeMap<String, f64> = [("HUM".into(), 0.5), ("LOC".into(), 0.3)].into();
        assert_eq!(Confidence::from(m), c);
    }

    #[test]
    fn names_are_shared() {
        let a: Confidence = [("ENTY", 0.5)].into();
        let b: Confidence = serde_json::from_str(r#"{"ENTY":0.7}"#).unwrap();
        assert!(Name::ptr_eq(&a.0[0].0, &b.0[0].0));
        let mut c = a.clone();
        *c.entry_or_zero("ABBR") += 0.25;
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [("ABBR", &0.25), ("ENTY", &0.5)]
        );
    }
}
