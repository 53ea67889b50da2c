//! Crash test: a child process writes transitions and prints each acknowledged one; it is
//! killed with SIGKILL at a random moment, several rounds over one store; after each
//! round every acknowledged transition must be on disk and every order must equal the
//! replay of its event log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storage::Ticket;
use wire::model::{OrderEventKind, OrderState, Role};
use wire::{AssociateId, OrderId, UserId};

use crate::{Kind, both, new_order, replay};

/// Where the child's store is: a sled directory or a Postgres URL.
const CHILD_ENV: &str = "SPEEDY_CRASH_CHILD_STORE";

/// The next step for an order in `state`, cycling through the lifecycle.
fn next_kind(state: OrderState, n: u64) -> Option<OrderEventKind> {
    Some(match state {
        OrderState::Allotted if n % 7 == 0 => OrderEventKind::Cancelled {
            by: Role::User,
            reason: None,
            fee_minor: 0,
            invoice_id: None,
        },
        OrderState::Allotted => OrderEventKind::EnRoute,
        OrderState::EnRoute => OrderEventKind::Arrived,
        OrderState::Arrived => OrderEventKind::Started,
        OrderState::Started => OrderEventKind::Completed { minutes: 12 },
        OrderState::Completed => OrderEventKind::Billed {
            invoice_id: wire::InvoiceId::new(),
            total_minor: 500,
        },
        OrderState::Billed => OrderEventKind::Paid {
            payment_id: wire::PaymentId::new(),
            method: wire::model::PaymentMethod::Cash,
            amount_minor: 500,
        },
        OrderState::Paid => OrderEventKind::Closed,
        OrderState::Closed | OrderState::Cancelled => return None,
    })
}

/// The child: four writer threads, each creating orders and walking them forward,
/// printing `ack <order> <seq>` only once the write is durable. Even threads write
/// through the group committer (as the order actors do), odd ones on their own thread
/// and wait for a ticket, so a kill lands on both paths.
#[test]
#[ignore = "entry point of the crash test's child process, run by crash_and_recover"]
fn crash_child_writer() {
    let Ok(locator) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = crate::Place::at(&locator).open().unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let store = store.clone();
            scope.spawn(move || {
                let stdout = std::io::stdout();
                let mut open: Vec<(OrderId, OrderState)> = Vec::new();
                for n in 0u64.. {
                    let line = if open.len() < 8 || n % 5 == 0 {
                        let o = new_order(UserId::new(), AssociateId::new(), n);
                        if t % 2 == 0 {
                            store.create_order_durable(o.clone()).wait().unwrap();
                        } else {
                            store.create_order(&o).unwrap().ticket.wait().unwrap();
                        }
                        open.push((o.order_id, OrderState::Allotted));
                        format!("ack {} 0\n", o.order_id)
                    } else {
                        let i = ((n * 31 + t) as usize) % open.len();
                        let (id, state) = open[i];
                        let kind = next_kind(state, n).unwrap();
                        let c = if t % 2 == 0 {
                            store.transition_durable(id, n, kind, Vec::new()).wait()
                        } else {
                            let mut c = store.transition(id, n, kind, &[]).unwrap();
                            let ticket = std::mem::replace(&mut c.ticket, Ticket::done());
                            ticket.wait().map(|()| c)
                        };
                        let c = c.unwrap();
                        if c.order.state.is_terminal() {
                            open.swap_remove(i);
                        } else {
                            open[i].1 = c.order.state;
                        }
                        format!("ack {} {}\n", id, c.event.seq)
                    };
                    let mut out = stdout.lock();
                    out.write_all(line.as_bytes()).unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

fn crash_and_recover(kind: Kind) {
    let place = kind.place();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<OrderId, u32> = HashMap::new();
    // Kill moments spread over the first second of writing: early, mid-flush, later.
    let kill_after_ms = [40u64, 150, 330, 520, 800, 90];
    for (round, delay) in kill_after_ms.into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, place.locator())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        // Let the child write for a while, then kill it mid-stream.
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "child must die by the signal");
        let lines = reader.join().unwrap();
        let mut round_acks = 0;
        for line in &lines {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                continue;
            }
            let id: OrderId = parts.next().unwrap().parse().unwrap();
            let seq: u32 = parts.next().unwrap().parse().unwrap();
            let e = acked.entry(id).or_insert(seq);
            *e = (*e).max(seq);
            round_acks += 1;
        }
        let store = place.open().unwrap();
        for (id, seq) in &acked {
            let order = store
                .order(*id)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged order {id} lost"));
            let events = store.events(*id).unwrap();
            assert!(
                events.len() as u32 > *seq,
                "round {round}: order {id} lost acknowledged event {seq}"
            );
            assert_eq!(
                replay(&order, &events),
                order,
                "round {round}: order {id} disagrees with its log"
            );
        }
        for order in store.open_orders().unwrap() {
            assert!(!order.state.is_terminal());
        }
        eprintln!(
            "round {round}: killed after {:?}, {round_acks} acks this round, {} orders so far",
            start.elapsed(),
            acked.len()
        );
    }
    assert!(
        acked.len() > 50,
        "the child wrote too little to test anything: {}",
        acked.len()
    );
}
both!(crash_and_recover);
