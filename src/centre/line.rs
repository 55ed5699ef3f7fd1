//! One queue's line: the contacts holding a place, in seniority order, with ranks.
//!
//! Owns only ordering. A contact's position is the number of keys ahead of its own plus
//! one, answered by an order-statistic tree (`indexset`: sorted nodes of bounded size with
//! a Fenwick tree over the node sizes), so a position, an insertion or a removal costs
//! O(log n) and never walks the line. The routable subset (contacts an agent may be
//! offered now) is kept apart so routing takes its head instead of skipping over lost
//! calls, gated call-backs and transfers. Imports nothing but the centre's key types.

use indexset::{BTreeMap, BTreeSet};

use super::contact::ContactId;
use super::queue::LineKey;

/// The line of one queue. Keys are unique (`seq` is centre-wide).
#[derive(Debug, Clone, Default)]
pub(crate) struct Line {
    places: BTreeMap<LineKey, ContactId>,
    /// The subset of `places` that routing may offer right now.
    routable: BTreeSet<LineKey>,
}

impl Line {
    pub fn insert(&mut self, key: LineKey, id: ContactId, routable: bool) {
        self.places.insert(key, id);
        if routable {
            self.routable.insert(key);
        }
    }

    pub fn remove(&mut self, key: &LineKey) {
        self.places.remove(key);
        self.routable.remove(key);
    }

    /// Makes a contact already in line routable (its call-back window opened).
    pub fn make_routable(&mut self, key: LineKey) {
        if self.places.contains_key(&key) {
            self.routable.insert(key);
        }
    }

    /// How many contacts hold a place ahead of `key` (whether or not `key` is in line).
    pub fn ahead(&self, key: &LineKey) -> usize {
        self.places.rank(key)
    }

    /// 1-based position of `key`, if it holds a place.
    pub fn position(&self, key: &LineKey) -> Option<usize> {
        self.places
            .contains_key(key)
            .then(|| self.ahead(key).saturating_add(1))
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// The contact at the head of the line (routable or not).
    pub fn first(&self) -> Option<(&LineKey, &ContactId)> {
        self.places.first_key_value()
    }

    /// The most senior contact routing may offer now.
    pub fn first_routable(&self) -> Option<(&LineKey, &ContactId)> {
        let key = self.routable.first()?;
        self.places.get_key_value(key)
    }

    /// Every place in order (snapshots for tests and tools; never on the hot path).
    pub fn iter(&self) -> impl Iterator<Item = (&LineKey, &ContactId)> {
        self.places.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::contact::Timestamp;

    fn key(n: u64) -> LineKey {
        (Timestamp(n / 2), n)
    }

    fn id(n: u64) -> ContactId {
        use rand::SeedableRng;
        ContactId::random(&mut rand::rngs::StdRng::seed_from_u64(n))
    }

    #[test]
    fn ranks_follow_inserts_and_removals_across_node_splits() {
        let mut line = Line::default();
        // More than one node's worth, inserted out of order.
        let order: Vec<u64> = (0..5000u64).map(|i| (i * 7919) % 5000).collect();
        for &n in &order {
            line.insert(key(n), id(n), n % 3 == 0);
        }
        assert_eq!(line.len(), 5000);
        assert_eq!(line.position(&key(0)), Some(1));
        assert_eq!(line.position(&key(4999)), Some(5000));
        assert_eq!(line.ahead(&key(2500)), 2500);
        for n in (0..5000).step_by(2) {
            line.remove(&key(n));
        }
        assert_eq!(line.len(), 2500);
        assert_eq!(line.position(&key(1)), Some(1));
        assert_eq!(line.position(&key(4999)), Some(2500));
        assert_eq!(line.position(&key(2)), None);
        // Routable: multiples of 3 that are odd survive: 3 is the first.
        assert_eq!(line.first_routable().map(|(k, _)| k.1), Some(3));
        line.remove(&key(3));
        assert_eq!(line.first_routable().map(|(k, _)| k.1), Some(9));
        line.make_routable(key(1));
        assert_eq!(line.first_routable().map(|(k, _)| k.1), Some(1));
        // A key not in line cannot become routable.
        line.make_routable(key(0));
        assert_eq!(line.first_routable().map(|(k, _)| k.1), Some(1));
    }
}
