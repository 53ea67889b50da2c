//! Request → first offer latency with many associates online and a steady request rate;
//! also how many requests are held open at once (nobody answers, so every request keeps
//! its offer out for the whole window).
//!
//! Run: `cargo bench -p speedy-benches --bench dispatch_latency`. Settings (environment):
//! `DISPATCH_ASSOCIATES` (100000), `DISPATCH_RATE` requests/s (2000), `DISPATCH_SECONDS`
//! (10), `DISPATCH_ARBITERS` actor threads (1).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, Context, Handler};
use actors::{
    ActorError, AssociateProfileInfo, Clock, CreateOrder, Dispatch, DispatchConfig, Outbox,
    Sessions,
};
use hdrhistogram::Histogram;
use speedy_benches::{METRO, TASK_TYPES, metro_associates, queries};
use wire::model::Point;
use wire::{
    AssociateId, OrderId, PartyId, RequestId, ServerMessage, TaskCatalog, TaskRequest, UserId,
};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Never reached: nobody accepts in this benchmark.
struct NoOrders;

impl Actor for NoOrders {
    type Context = Context<Self>;
}

impl Handler<CreateOrder> for NoOrders {
    type Result = Result<OrderId, ActorError>;

    fn handle(&mut self, _: CreateOrder, _: &mut Context<Self>) -> Self::Result {
        Err(ActorError::Internal("no orders in this benchmark".into()))
    }
}

fn main() {
    let associates: usize = env("DISPATCH_ASSOCIATES", 100_000);
    let rate: u64 = env("DISPATCH_RATE", 2_000);
    let seconds: u64 = env("DISPATCH_SECONDS", 10);
    let arbiter_count: usize = env("DISPATCH_ARBITERS", 1);
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    });
    system.block_on(async move {
        let arbiters: Vec<Arbiter> = (0..arbiter_count).map(|_| Arbiter::new()).collect();
        let names: Vec<String> = (0..TASK_TYPES).map(|t| format!("task{t}")).collect();
        let catalog = TaskCatalog::new(names.clone()).expect("catalog");
        let sessions = Sessions::default();
        let dispatch = Dispatch::new(
            DispatchConfig::default(),
            catalog,
            sessions.clone(),
            Clock::system(),
            arbiters.iter().map(Arbiter::handle).collect(),

            storage::Store::temporary().expect("store"),        )
        .expect("dispatch");
        dispatch.set_order_sink(NoOrders.start().recipient());

        // Every associate's frames land in one queue: we only look for offers.
        let (outbox, mut frames) = Outbox::channel(1 << 20);
        let population = metro_associates(associates, 42);
        let setup = Instant::now();
        for a in &population {
            let id = AssociateId(uuid::Uuid::from_u64_pair(1, a.id));
            sessions.attach(PartyId::Associate(id), outbox.clone());
            let info = AssociateProfileInfo { skills: a.skills, zone: None };
            dispatch.associate_connected(id, info).await.expect("connected");
            dispatch.associate_location(id, a.point);
            dispatch.go_online(id, None).await.expect("online");
        }
        // Drain the status frames of going online.
        while let Ok(frame) = frames.try_recv() {
            drop(frame);
        }
        println!("{associates} associates online in {:.1} s", setup.elapsed().as_secs_f64());

        // The collector pairs each request's start with its first offer, whichever it
        // hears of first.
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<(RequestId, Instant)>();
        let first_offer = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")));
        let collector = {
            let first_offer = first_offer.clone();
            tokio::spawn(async move {
                let mut starts: HashMap<RequestId, Instant> = HashMap::new();
                let mut offers: HashMap<RequestId, Instant> = HashMap::new();
                let record = |t0: Instant, t1: Instant| {
                    let micros = t1.saturating_duration_since(t0).as_micros().max(1) as u64;
                    first_offer.lock().expect("lock").record(micros).ok();
                };
                loop {
                    tokio::select! {
                        Some((id, t0)) = started_rx.recv() => match offers.remove(&id) {
                            Some(t1) => record(t0, t1),
                            None => { starts.insert(id, t0); }
                        },
                        Some(frame) = frames.recv() => {
                            if let ServerMessage::Offer(offer) = &*frame {
                                let t1 = Instant::now();
                                match starts.remove(&offer.request_id) {
                                    Some(t0) => record(t0, t1),
                                    None => { offers.entry(offer.request_id).or_insert(t1); }
                                }
                            }
                        }
                        else => break,
                    }
                }
            })
        };

        let qs = queries(rate as usize * seconds as usize, 7);
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let start = Instant::now();
        let mut issued = 0usize;
        let mut handles = Vec::with_capacity(qs.len());
        for (i, (point, task)) in qs.iter().enumerate() {
            tick.tick().await;
            let dispatch = dispatch.clone();
            let started = started_tx.clone();
            let frame = TaskRequest {
                client_ref: i.to_string(),
                task: names[task.get() as usize].clone(),
                pickup: Point::from(*point),
                note: None,
                discount_code: None,
            };
            let user = UserId(uuid::Uuid::from_u64_pair(2, i as u64));
            handles.push(tokio::spawn(async move {
                let t = Instant::now();
                let received = dispatch.request(user, actors::NewRequest::new(frame).unwrap()).await.expect("request");
                let _ = started.send((received.request_id, t));
            }));
            issued += 1;
        }
        for h in handles {
            h.await.expect("request task");
        }
        let issuing = start.elapsed();
        // Let the last offers arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = dispatch.open_requests();
        collector.abort();
        let h = first_offer.lock().expect("lock");
        println!(
            "{issued} requests in {:.2} s ({:.0}/s offered), {} first offers seen, {open} requests open at the end",
            issuing.as_secs_f64(),
            issued as f64 / issuing.as_secs_f64(),
            h.len()
        );
        println!("metro box {:?}, {TASK_TYPES} task types, {arbiter_count} actor thread(s)", METRO);
        for q in [0.5, 0.9, 0.99, 0.999] {
            println!("request -> first offer p{:<5} {:>9.3} ms", q * 100.0, h.value_at_quantile(q) as f64 / 1000.0);
        }
        println!("request -> first offer max    {:>9.3} ms", h.max() as f64 / 1000.0);
        for arbiter in arbiters {
            arbiter.stop();
        }
        actix_rt::System::current().stop();
    });
}
