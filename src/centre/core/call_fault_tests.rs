//! The centre's side of issue 9 ("calls that never lie"), on a virtual clock: what an
//! admission says about rejoining, whose fault a failed transfer is, and dead calls.

use super::*;
use crate::centre::testkit::{self, Drive, T0, a, agent, caller, local_queue, q};
use rand::SeedableRng;

fn config() -> CentreConfig {
    testkit::config(
        vec![local_queue("support", 300)],
        vec![agent("ann", &["support"]), agent("bob", &["support"])],
    )
}

fn centre() -> Centre {
    Centre::new(config(), StdRng::seed_from_u64(9))
}

fn call(n: u32) -> NewContact {
    NewContact {
        queue: q("support"),
        media: MediaType::Voice,
        caller: caller(n),
        call_ref: format!("call-{n}"),
    }
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

/// Every row the centre holds, as a store would.
fn all_rows(c: &Centre) -> Vec<StoredContact> {
    c.book
        .rows
        .values()
        .map(|r| StoredContact::clone(r))
        .collect()
}

#[test]
fn an_admission_says_whether_the_caller_rejoined_not_the_version() {
    let mut c = centre();
    c.agent_login(T0, &a("ann")).unwrap();
    c.agent_ready(T0, &a("ann")).unwrap();
    // Routed to Ann in the batch that admits it: its version is past 1 at once ...
    let new = c.handle(at(1), Admit(call(1))).expect("admitted");
    assert!(!new.rejoined, "a new caller");
    assert!(
        c.row(&new.id).unwrap().version > 1,
        "routed in the same batch"
    );
    assert!(
        c.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::Offer { .. }))
    );
    // ... and a caller whose call was lost in a restart and who rings again rejoins.
    let second = c.handle(at(2), Admit(call(2))).expect("admitted");
    let (mut b, _) = Centre::restore(config(), StdRng::seed_from_u64(10), all_rows(&c), at(1000));
    let again = b.handle(at(2000), Admit(call(2))).expect("rejoined");
    assert_eq!(again.id, second.id);
    assert!(again.rejoined);
}
