//! Where each channel goes: every node computes the same placement from the same view (the
//! live nodes and the channels), so they agree without talking; etcd's owner keys, not this,
//! decide who sends. Weighted rendezvous hashing: each channel ranks the nodes by a score
//! drawn from a hash of (channel, node) and weighted by the node's capacity, and goes to the
//! first with room. A node that joins takes from each other node only the channels it now
//! ranks first for; a node that leaves gives its channels to their next choices; nothing else
//! moves. A channel's `prefer` list goes before the ranking: the first live node of it with
//! room. Nodes a channel should `avoid` (they play it out of step with the fleet: sent by one,
//! it would start a new stream) come after all the others.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A live node as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) name: String,
    /// The most channels it carries.
    pub(crate) capacity: usize,
}

/// A channel to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Channel {
    pub(crate) id: String,
    /// Nodes it goes to first, in order.
    pub(crate) prefer: Vec<String>,
    /// Nodes it goes to last (out of step for it).
    pub(crate) avoid: Vec<String>,
}

/// `c`'s nodes in its order: `prefer` (the live ones), then by score, `avoid` ones last.
fn order<'a>(c: &Channel, nodes: &'a [Node]) -> Vec<&'a Node> {
    let preferred = c
        .prefer
        .iter()
        .filter_map(|p| nodes.iter().find(|n| &n.name == p));
    let mut ranked: Vec<(f64, &Node)> = nodes.iter().map(|n| (score(&c.id, n), n)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let mut all: Vec<&Node> = Vec::new();
    for n in preferred.chain(ranked.into_iter().map(|(_, n)| n)) {
        if !all.iter().any(|x| x.name == n.name) {
            all.push(n);
        }
    }
    // (A stable sort: each part keeps its order.)
    all.sort_by_key(|n| c.avoid.contains(&n.name));
    all
}

/// Where each channel goes, by id; a channel no node has room for is left out.
pub(crate) fn place(channels: &[Channel], nodes: &[Node]) -> HashMap<String, String> {
    let mut load: HashMap<&str, usize> = nodes.iter().map(|n| (n.name.as_str(), 0)).collect();
    let mut out = HashMap::new();
    // Pinned channels first, so the ranking fills what is left; each group in id order, so
    // every node takes the same decisions.
    let mut sorted: Vec<&Channel> = channels.iter().collect();
    sorted.sort_by(|a, b| (a.prefer.is_empty(), &a.id).cmp(&(b.prefer.is_empty(), &b.id)));
    for c in sorted {
        let choice = order(c, nodes)
            .into_iter()
            .find(|n| load[n.name.as_str()] < n.capacity);
        if let Some(n) = choice {
            *load.get_mut(n.name.as_str()).expect("a listed node") += 1;
            out.insert(c.id.clone(), n.name.clone());
        }
    }
    out
}

/// Each channel's standbys, in takeover order: first the node that would send it were its
/// sender (`senders`: its owner, or where it is placed while unowned) gone, the placement
/// computed again without it, exactly as a takeover computes it; then, up to `n`, the next
/// nodes of the channel's own order (`prefer`, then its ranking) without regard to room: the
/// exact answer there would take a placement per set of gone nodes, too many for a large
/// fleet. A channel with no sender has none.
pub(crate) fn standbys(
    channels: &[Channel],
    nodes: &[Node],
    senders: &HashMap<String, String>,
    n: usize,
) -> HashMap<String, Vec<String>> {
    // The placement without each sender: one per node that sends something.
    let mut without: HashMap<&str, HashMap<String, String>> = HashMap::new();
    let mut out = HashMap::new();
    for c in channels {
        let Some(sender) = senders.get(&c.id) else {
            continue;
        };
        let mut list: Vec<String> = Vec::new();
        if n > 0 {
            let placed = without.entry(sender.as_str()).or_insert_with(|| {
                let left: Vec<Node> = nodes
                    .iter()
                    .filter(|x| &x.name != sender)
                    .cloned()
                    .collect();
                place(channels, &left)
            });
            if let Some(first) = placed.get(&c.id) {
                list.push(first.clone());
            }
        }
        if list.len() == 1 && n > 1 {
            for x in order(c, nodes) {
                if list.len() == n {
                    break;
                }
                if &x.name != sender && !list.contains(&x.name) {
                    list.push(x.name.clone());
                }
            }
        }
        out.insert(c.id.clone(), list);
    }
    out
}

/// The weighted rendezvous score of `node` for `channel`: `capacity / -ln(u)`, `u` uniform
/// in (0, 1) from a hash of both names.
fn score(channel: &str, node: &Node) -> f64 {
    let h = Sha256::new()
        .chain_update(channel.as_bytes())
        .chain_update([0])
        .chain_update(node.name.as_bytes())
        .finalize();
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) >> 11;
    // (x + 0.5) / 2^53: strictly inside (0, 1).
    let u = (x as f64 + 0.5) / (1u64 << 53) as f64;
    node.capacity as f64 / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(&str, usize)]) -> Vec<Node> {
        spec.iter()
            .map(|(n, c)| Node {
                name: (*n).into(),
                capacity: *c,
            })
            .collect()
    }

    fn channels(n: usize) -> Vec<Channel> {
        (0..n)
            .map(|i| Channel {
                id: format!("ch{i:03}"),
                prefer: vec![],
                avoid: vec![],
            })
            .collect()
    }

    #[test]
    fn spread_by_capacity_and_stable_when_a_node_comes_or_goes() {
        let chans = channels(300);
        let three = nodes(&[("a", 300), ("b", 300), ("c", 300)]);
        let p3 = place(&chans, &three);
        assert_eq!(p3.len(), 300);
        for n in ["a", "b", "c"] {
            let k = p3.values().filter(|v| *v == n).count();
            assert!((70..=130).contains(&k), "{n}: {k}");
        }
        // c leaves: only its channels move.
        let p2 = place(&chans, &three[..2]);
        for (ch, n) in &p3 {
            if n != "c" {
                assert_eq!(&p2[ch], n, "{ch} moved");
            }
        }
        // d joins: channels only move to d.
        let four = nodes(&[("a", 300), ("b", 300), ("c", 300), ("d", 300)]);
        let p4 = place(&chans, &four);
        let moved: Vec<_> = p3.iter().filter(|(ch, n)| &&p4[*ch] != n).collect();
        assert!(moved.iter().all(|(ch, _)| p4[*ch] == "d"));
        assert!((50..=100).contains(&moved.len()), "{}", moved.len());
        // Capacity weighs and caps.
        let uneven = nodes(&[("big", 300), ("small", 20)]);
        let p = place(&chans, &uneven);
        let small = p.values().filter(|v| *v == "small").count();
        assert!((5..=20).contains(&small), "{small}");
        let tiny = nodes(&[("x", 100), ("y", 50)]);
        assert_eq!(place(&chans, &tiny).len(), 150, "the rest has no room");
    }

    /// A channel's standby is the node that takes it when its sender goes: the placement
    /// without the sender.
    #[test]
    fn standbys_are_where_a_takeover_puts_each_channel() {
        let chans = channels(60);
        let three = nodes(&[("a", 300), ("b", 300), ("c", 300)]);
        let senders = place(&chans, &three);
        let one = standbys(&chans, &three, &senders, 1);
        for c in &chans {
            let s = &senders[&c.id];
            let without: Vec<Node> = three.iter().filter(|x| &x.name != s).cloned().collect();
            assert_eq!(one[&c.id], vec![place(&chans, &without)[&c.id].clone()]);
            assert_ne!(&one[&c.id][0], s);
        }
        // Two standbys: the other two nodes, in takeover order; none past the nodes there are.
        let two = standbys(&chans, &three, &senders, 2);
        let five = standbys(&chans, &three, &senders, 5);
        for c in &chans {
            assert_eq!(two[&c.id][0], one[&c.id][0]);
            assert_eq!(two[&c.id].len(), 2);
            assert!(!two[&c.id].contains(&senders[&c.id]));
            assert_eq!(five[&c.id], two[&c.id]);
        }
        assert!(standbys(&chans, &three, &senders, 0)
            .values()
            .all(Vec::is_empty));
        assert!(standbys(&chans, &three, &HashMap::new(), 1).is_empty());
    }

    #[test]
    fn preferred_nodes_go_first_while_live_and_with_room() {
        let mut chans = channels(10);
        for c in &mut chans {
            c.prefer = vec!["b".into(), "a".into()];
        }
        let n = nodes(&[("a", 10), ("b", 6), ("c", 10)]);
        let p = place(&chans, &n);
        assert_eq!(p.values().filter(|v| *v == "b").count(), 6);
        assert_eq!(p.values().filter(|v| *v == "a").count(), 4);
        let p = place(&chans, &nodes(&[("a", 10), ("c", 10)]));
        assert!(p.values().all(|v| v == "a"));
    }

    /// A node out of step for a channel gets it only when no other has room, preferred or
    /// not; so is it chosen last as a standby.
    #[test]
    fn nodes_out_of_step_come_last() {
        let mut chans = channels(10);
        for c in &mut chans {
            c.prefer = vec!["b".into()];
            c.avoid = vec!["b".into()];
        }
        let n = nodes(&[("a", 6), ("b", 10), ("c", 10)]);
        let p = place(&chans, &n);
        assert_eq!(p.values().filter(|v| *v == "b").count(), 0);
        let small = nodes(&[("a", 3), ("b", 10), ("c", 3)]);
        let p = place(&chans, &small);
        assert_eq!(p.values().filter(|v| *v == "b").count(), 4, "{p:?}");
        let roomy = nodes(&[("a", 10), ("b", 10), ("c", 10)]);
        let senders = place(&chans, &roomy);
        for (id, list) in standbys(&chans, &roomy, &senders, 2) {
            assert_eq!(list.last().map(String::as_str), Some("b"), "{id}: {list:?}");
        }
    }
}
