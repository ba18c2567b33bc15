//! Which replica runs a probe: rendezvous (highest random weight) hashing over the live
//! replicas of a location.
//!
//! Every replica computes the same answer from the same membership, with no coordination:
//! each (probe, replica) pair gets a score and the highest wins. When a replica leaves only
//! the probes it owned move (each to the replica with the next-highest score), and a replica
//! that joins takes about `1/n` from every other. The hash is FNV-1a, fixed here, so a
//! mixed-version cluster agrees (std's `DefaultHasher` may change between releases).

/// The replica that owns `probe` among `members`, or `None` when there are none.
pub fn owner<'m>(probe: &str, members: &'m [String]) -> Option<&'m str> {
    members
        .iter()
        .max_by_key(|m| (score(probe, m), m.as_str()))
        .map(String::as_str)
}

/// Whether `me` owns `probe` among `members`.
pub fn owns(probe: &str, me: &str, members: &[String]) -> bool {
    owner(probe, members) == Some(me)
}

fn score(probe: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in probe
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(member.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for similar inputs; a final avalanche (splitmix64) spreads them.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn shares_are_even_and_a_leaving_replica_moves_only_its_own() {
        let three = members(&["a:9464", "b:9464", "c:9464"]);
        let two = members(&["a:9464", "c:9464"]);
        let probes: Vec<String> = (0..3000).map(|i| format!("probe-{i}")).collect();
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for p in &probes {
            let before = owner(p, &three).unwrap();
            counts[three.iter().position(|m| m == before).unwrap()] += 1;
            let after = owner(p, &two).unwrap();
            if before != after {
                moved += 1;
                assert_eq!(before, "b:9464", "only b's probes move");
            }
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "uneven shares {counts:?}");
        }
        assert_eq!(moved, counts[1]);
    }

    #[test]
    fn a_joining_replica_takes_about_a_third() {
        let two = members(&["a", "b"]);
        let three = members(&["a", "b", "c"]);
        let taken = (0..3000)
            .map(|i| format!("p{i}"))
            .filter(|p| owner(p, &two) != owner(p, &three))
            .inspect(|p| assert_eq!(owner(p, &three), Some("c")))
            .count();
        assert!((850..=1150).contains(&taken), "{taken}");
    }

    #[test]
    fn no_members_no_owner() {
        assert_eq!(owner("x", &[]), None);
        assert!(owns("x", "a", &members(&["a"])));
    }
}
