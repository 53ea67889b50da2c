//! The availability index: associates by position and skills, queried for the nearest
//! eligible ones within a radius.
//!
//! Space is cut into small cubes of 3-D unit-vector space (edge `bucket_m`). A bucket
//! holds the associates of one task type inside one cube, stored inline so a query scans
//! them contiguously; one R-tree per task type indexes its non-empty buckets, so a query
//! only ever looks at eligible associates. A GPS move that stays inside its cube is a
//! few writes and no tree surgery; a tree changes only when a bucket appears or empties.
//! Ordering is by squared chord length, which is monotonic in great-circle distance and
//! has no special case at the poles or the antimeridian.

use std::fmt;
use std::hash::Hash;

use rstar::{
    AABB, ParentNode, PointDistance, RStarInsertionStrategy, RTree, RTreeNode, RTreeObject,
    RTreeParams,
};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::error::GeoError;
use crate::point::{EARTH_RADIUS_M, LatLng};
use crate::skills::{MAX_TASK_TYPES, Skills, TaskType};
use crate::sphere::{chord2, chord2_for_radius, distance_for_chord2};

/// Slack added around each bucket's box so rounding never puts a member outside it.
const BUCKET_SLACK: f64 = 1e-12;
/// Offset that makes a bucket coordinate non-negative before packing it in 21 bits.
const CELL_OFFSET: i64 = 1 << 20;

/// Tuning for an [`AvailabilityIndex`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexConfig {
    /// Edge of a bucket in metres: moves inside one bucket touch no tree.
    pub bucket_m: f64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { bucket_m: 1_000.0 }
    }
}

/// What the index holds for one associate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Last known position.
    pub point: LatLng,
    /// Task types the associate performs.
    pub skills: Skills,
}

/// A nearest-k query: up to `k` associates with `task` within `radius_m` of `point`.
#[derive(Debug, Clone, Copy)]
pub struct NearestQuery<'a, Id> {
    /// Where the search is centred.
    pub point: LatLng,
    /// The task type every result must perform.
    pub task: TaskType,
    /// Search radius in metres (great-circle), inclusive.
    pub radius_m: f64,
    /// At most this many results.
    pub k: usize,
    /// Associates never returned (for instance those who declined this request).
    pub exclude: &'a [Id],
}

/// One query result.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Neighbor<Id> {
    /// The associate.
    pub id: Id,
    /// Great-circle distance from the query point in metres.
    pub distance_m: f64,
    /// Squared chord to the query point: the exact ordering key.
    pub(crate) chord2: f64,
}

impl<Id: Ord> Neighbor<Id> {
    /// Whether `self` sorts before `other`: nearer first, ties by id.
    pub(crate) fn precedes(&self, other: &Self) -> bool {
        precedes(self.chord2, &self.id, other.chord2, &other.id)
    }
}

#[inline]
fn precedes<Id: Ord>(a_c2: f64, a_id: &Id, b_c2: f64, b_id: &Id) -> bool {
    a_c2 < b_c2 || (a_c2 == b_c2 && a_id < b_id)
}

/// An associate as stored inside a bucket.
#[derive(Debug, Clone, Copy)]
struct Member<Id> {
    v: [f64; 3],
    id: Id,
}

/// A bucket: one task type inside one cube of unit-vector space. Its members live
/// apart, in `AvailabilityIndex::members`, so a query touches only member memory.
#[derive(Debug)]
struct Bucket {
    key: CellKey,
    aabb: AABB<[f64; 3]>,
}

/// A bucket's identity: its packed cube coordinates and its task type.
type CellKey = (u64, u8);

/// Where an associate is: its position, and its place in one bucket per skill.
#[derive(Debug, Clone)]
struct Slot {
    cube: u64,
    point: LatLng,
    skills: Skills,
    /// (bucket, position in it), one per skill in increasing task-type order.
    at: SmallVec<[(u32, u32); 3]>,
}

/// A bucket as its task type's R-tree sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BucketRef {
    aabb: AABB<[f64; 3]>,
    bucket: u32,
}

impl RTreeObject for BucketRef {
    type Envelope = AABB<[f64; 3]>;

    fn envelope(&self) -> Self::Envelope {
        self.aabb
    }
}

impl PointDistance for BucketRef {
    fn distance_2(&self, point: &[f64; 3]) -> f64 {
        self.aabb.distance_2(point)
    }
}

/// Node sizes of the bucket trees: wider than rstar's default of 6, so a nearest-first
/// walk pops fewer nodes.
struct TreeParams;

impl RTreeParams for TreeParams {
    const MIN_SIZE: usize = 4;
    const MAX_SIZE: usize = 12;
    const REINSERTION_COUNT: usize = 3;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// Available associates by position and skills (see the module docs for the layout).
pub struct AvailabilityIndex<Id> {
    /// Unit-sphere length of a bucket edge, and its inverse.
    cell: f64,
    inv_cell: f64,
    slots: FxHashMap<Id, Slot>,
    cells: FxHashMap<CellKey, u32>,
    buckets: Vec<Bucket>,
    /// The members of each bucket, by bucket number.
    members: Vec<Vec<Member<Id>>>,
    free_buckets: Vec<u32>,
    trees: Vec<RTree<BucketRef, TreeParams>>,
}

impl<Id> fmt::Debug for AvailabilityIndex<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvailabilityIndex")
            .field("associates", &self.slots.len())
            .field("buckets", &self.cells.len())
            .finish()
    }
}

impl<Id: Copy + Eq + Ord + Hash> Default for AvailabilityIndex<Id> {
    fn default() -> Self {
        // expect: the default bucket size is within the validated range.
        Self::new(IndexConfig::default()).expect("default index config is valid")
    }
}

impl<Id: Copy + Eq + Ord + Hash> AvailabilityIndex<Id> {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Result<Self, GeoError> {
        let b = config.bucket_m;
        if !(b.is_finite() && (10.0..=100_000.0).contains(&b)) {
            return Err(GeoError::InvalidBucketSize(b));
        }
        let cell = b / EARTH_RADIUS_M;
        Ok(Self {
            cell,
            inv_cell: 1.0 / cell,
            slots: FxHashMap::default(),
            cells: FxHashMap::default(),
            buckets: Vec::new(),
            members: Vec::new(),
            free_buckets: Vec::new(),
            trees: (0..MAX_TASK_TYPES)
                .map(|_| RTree::new_with_params())
                .collect(),
        })
    }

    /// How many associates the index holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `id` is in the index.
    pub fn contains(&self, id: &Id) -> bool {
        self.slots.contains_key(id)
    }

    /// Position and skills of `id`, if present.
    pub fn get(&self, id: &Id) -> Option<Entry> {
        self.slots.get(id).map(Slot::entry)
    }

    /// Every associate with its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Id, Entry)> + '_ {
        self.slots.iter().map(|(id, slot)| (*id, slot.entry()))
    }

    /// Inserts `id` or moves it to `point` with `skills`.
    pub fn upsert(&mut self, id: Id, point: LatLng, skills: Skills) {
        let v = point.unit().0;
        let cube = self.cube_of(&v);
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.cube == cube && slot.skills == skills {
                slot.point = point;
                for &(b, pos) in &slot.at {
                    self.members[b as usize][pos as usize].v = v;
                }
                return;
            }
            let old = std::mem::take(&mut slot.at);
            self.detach(&old);
        }
        let member = Member { v, id };
        let at = skills
            .iter()
            .map(|t| self.attach(member, (cube, t.get())))
            .collect();
        self.slots.insert(
            id,
            Slot {
                cube,
                point,
                skills,
                at,
            },
        );
    }

    /// Moves a present associate to `point`, keeping its skills; false if `id` is absent.
    pub fn move_to(&mut self, id: Id, point: LatLng) -> bool {
        match self.slots.get(&id) {
            Some(slot) => {
                let skills = slot.skills;
                self.upsert(id, point, skills);
                true
            }
            None => false,
        }
    }

    /// Removes `id`, returning what the index held for it.
    pub fn remove(&mut self, id: &Id) -> Option<Entry> {
        let slot = self.slots.remove(id)?;
        self.detach(&slot.at);
        Some(slot.entry())
    }

    /// The nearest eligible associates, sorted by distance then id.
    pub fn nearest(&self, query: &NearestQuery<'_, Id>) -> Result<Vec<Neighbor<Id>>, GeoError> {
        let mut out = Vec::with_capacity(query.k.min(64));
        self.nearest_into(query, &mut out)?;
        Ok(out)
    }

    /// Like [`Self::nearest`], writing into `out` (cleared first) to reuse its allocation.
    pub fn nearest_into(
        &self,
        query: &NearestQuery<'_, Id>,
        out: &mut Vec<Neighbor<Id>>,
    ) -> Result<(), GeoError> {
        validate_query(query.radius_m, query.k)?;
        out.clear();
        let mut search = Search {
            p: query.point.unit().0,
            k: query.k,
            limit: chord2_for_radius(query.radius_m),
            exclude: query.exclude,
            out,
        };
        let root = self.trees[query.task.get() as usize].root();
        self.descend(root, &mut search);
        let out = search.out;
        for n in out.iter_mut() {
            n.distance_m = distance_for_chord2(n.chord2);
        }
        Ok(())
    }

    /// Branch and bound over one task tree: children nearest first, pruned by the limit.
    fn descend(&self, node: &ParentNode<BucketRef>, search: &mut Search<'_, '_, Id>) {
        let mut near: SmallVec<[(f64, &RTreeNode<BucketRef>); 16]> = node
            .children()
            .iter()
            .map(|child| (child.envelope().distance_2(&search.p), child))
            .filter(|(d2, _)| *d2 <= search.limit)
            .collect();
        near.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        // Touch the first cache line of every bucket we may scan before scanning any:
        // the loads are independent, so their cache misses overlap instead of queueing.
        let warm = near
            .iter()
            .filter_map(|(_, child)| match child {
                RTreeNode::Leaf(bucket) => self.members[bucket.bucket as usize].first(),
                RTreeNode::Parent(_) => None,
            })
            .fold(0.0, |acc, m| acc + m.v[0]);
        std::hint::black_box(warm);
        for (d2, child) in near {
            if d2 > search.limit {
                break;
            }
            match child {
                RTreeNode::Leaf(bucket) => self.scan(&self.members[bucket.bucket as usize], search),
                RTreeNode::Parent(parent) => self.descend(parent, search),
            }
        }
    }

    /// Offers every member of `bucket` to the running top-k.
    fn scan(&self, members: &[Member<Id>], search: &mut Search<'_, '_, Id>) {
        let k = search.k;
        for m in members {
            let c2 = chord2(&search.p, &m.v);
            if c2 > search.limit {
                continue;
            }
            let out = &mut *search.out;
            if out.len() == k {
                let worst = &out[k - 1];
                if !precedes(c2, &m.id, worst.chord2, &worst.id) {
                    continue;
                }
            }
            if search.exclude.contains(&m.id) {
                continue;
            }
            let at = out.partition_point(|n| precedes(n.chord2, &n.id, c2, &m.id));
            if out.len() == k {
                out.pop();
            }
            out.insert(
                at,
                Neighbor {
                    id: m.id,
                    distance_m: 0.0,
                    chord2: c2,
                },
            );
            if out.len() == k {
                search.limit = out[k - 1].chord2;
            }
        }
    }

    /// The packed coordinates of the cube holding unit vector `v`.
    fn cube_of(&self, v: &[f64; 3]) -> u64 {
        let pack = |c: f64| ((c * self.inv_cell).floor() as i64 + CELL_OFFSET) as u64;
        (pack(v[0]) << 42) | (pack(v[1]) << 21) | pack(v[2])
    }

    /// The box of the cube with packed coordinates `cube`.
    fn cube_box(&self, cube: u64) -> AABB<[f64; 3]> {
        let mask = (1u64 << 21) - 1;
        let lo = |shift: u32| ((cube >> shift) & mask) as i64 - CELL_OFFSET;
        let corner = [lo(42), lo(21), lo(0)].map(|i| i as f64 * self.cell);
        AABB::from_corners(
            corner.map(|c| c - BUCKET_SLACK),
            corner.map(|c| c + self.cell + BUCKET_SLACK),
        )
    }

    /// Puts `member` into the bucket for `key`, creating it if needed; returns where.
    fn attach(&mut self, member: Member<Id>, key: CellKey) -> (u32, u32) {
        let b = match self.cells.get(&key) {
            Some(&b) => b,
            None => self.new_bucket(key),
        };
        let members = &mut self.members[b as usize];
        members.push(member);
        (b, (members.len() - 1) as u32)
    }

    /// Takes a member out of each bucket in `at`, dropping buckets that become empty.
    fn detach(&mut self, at: &[(u32, u32)]) {
        for &(b, pos) in at {
            let members = &mut self.members[b as usize];
            members.swap_remove(pos as usize);
            if let Some(moved) = members.get(pos as usize) {
                // The former last member now sits at `pos`; it has a slot unless it is
                // the associate being detached, which only ever has one entry per bucket.
                if let Some(slot) = self.slots.get_mut(&moved.id) {
                    for entry in slot.at.iter_mut().filter(|(mb, _)| *mb == b) {
                        entry.1 = pos;
                    }
                }
            }
            if members.is_empty() {
                let bucket = &self.buckets[b as usize];
                let removed = self.trees[bucket.key.1 as usize].remove(&BucketRef {
                    aabb: bucket.aabb,
                    bucket: b,
                });
                debug_assert!(removed.is_some(), "bucket missing from its task tree");
                self.cells.remove(&bucket.key);
                self.free_buckets.push(b);
            }
        }
    }

    /// A fresh empty bucket for `key`, entered in its task tree.
    fn new_bucket(&mut self, key: CellKey) -> u32 {
        let aabb = self.cube_box(key.0);
        let b = match self.free_buckets.pop() {
            Some(b) => {
                let bucket = &mut self.buckets[b as usize];
                bucket.key = key;
                bucket.aabb = aabb;
                b
            }
            None => {
                self.buckets.push(Bucket { key, aabb });
                self.members.push(Vec::new());
                (self.buckets.len() - 1) as u32
            }
        };
        self.trees[key.1 as usize].insert(BucketRef { aabb, bucket: b });
        self.cells.insert(key, b);
        b
    }
}

/// The running state of one nearest-k query.
struct Search<'q, 'o, Id> {
    /// The query point as a unit vector.
    p: [f64; 3],
    k: usize,
    /// Squared chord beyond which nothing can enter the answer: the radius, then the
    /// k-th best once there are k.
    limit: f64,
    exclude: &'q [Id],
    /// The answer so far, sorted by (chord, id).
    out: &'o mut Vec<Neighbor<Id>>,
}

impl Slot {
    fn entry(&self) -> Entry {
        Entry {
            point: self.point,
            skills: self.skills,
        }
    }
}

/// Checks the parts of a query the type system does not.
pub(crate) fn validate_query(radius_m: f64, k: usize) -> Result<(), GeoError> {
    if !(radius_m.is_finite() && radius_m >= 0.0) {
        return Err(GeoError::InvalidRadius(radius_m));
    }
    if k == 0 {
        return Err(GeoError::ZeroK);
    }
    Ok(())
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
