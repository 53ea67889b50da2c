//! The order event log: per-order replay after a cursor, and retried appends kept once.

use bytes::Bytes;
use cluster::EventLog;
use cluster::testing::NatsServer;

#[tokio::test]
async fn an_app_catches_up_on_its_order_after_the_last_sequence_it_saw() {
    let nats = NatsServer::start();
    let js = cluster::connect(&nats.url).await.unwrap();
    let log = EventLog::open(&js).await.unwrap();
    let (a, b) = ("01a2-order-a", "01a2-order-b");
    // Two orders' events interleaved, as a busy node appends them.
    let mut a_seqs = Vec::new();
    for i in 0..5u32 {
        a_seqs.push(
            log.append(a, i, Bytes::from(format!("a{i}")))
                .await
                .unwrap(),
        );
        log.append(b, i, Bytes::from(format!("b{i}")))
            .await
            .unwrap();
    }
    let all: Vec<Bytes> = log
        .after(a, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.payload)
        .collect();
    assert_eq!(
        all,
        ["a0", "a1", "a2", "a3", "a4"].map(|s| Bytes::from_static(s.as_bytes()))
    );
    // The app saw up to a1: it gets a2..a4, with the sequences it will resume after.
    let rest = log.after(a, a_seqs[1]).await.unwrap();
    assert_eq!(
        rest.iter().map(|l| l.sequence).collect::<Vec<_>>(),
        a_seqs[2..].to_vec()
    );
    assert_eq!(rest[0].payload, Bytes::from_static(b"a2"));
    assert!(log.after(a, a_seqs[4]).await.unwrap().is_empty());
    assert!(log.after("01a2-no-such-order", 0).await.unwrap().is_empty());

    // A retried append (same order, same event) is stored once, at the same sequence.
    let again = log.append(a, 4, Bytes::from_static(b"a4")).await.unwrap();
    assert_eq!(again, a_seqs[4]);
    assert_eq!(log.after(a, 0).await.unwrap().len(), 5);
}
