//! The S3 layer against a real S3 server (moto, one private server per test) through the
//! real aws-sdk-s3 client: conditional writes, refused documents, leases, outages, listing.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cacheon_handoff::testing::Moto;
use cacheon_handoff::{
    layout, Bucket, Claim, Condition, EnvelopeError, HandoffError, HandoffSecret, LeaseDoc, Put,
    Retry,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    round_id: i64,
    note: String,
    values: Vec<u32>,
}

fn doc(note: &str) -> Doc {
    Doc {
        round_id: 7,
        note: note.into(),
        values: vec![1, 2, 3],
    }
}

async fn bucket(moto: &Moto, secret: Option<&[u8]>) -> Bucket {
    let b = Bucket::new(
        &moto.config("handoff", "cacheon"),
        secret.map(|s| HandoffSecret::new(s.to_vec())),
        Retry::default(),
    )
    .unwrap();
    b.ensure_bucket().await.unwrap();
    b
}

fn refusal(err: HandoffError) -> EnvelopeError {
    match err {
        HandoffError::Refused { source, .. } => source,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn documents_round_trip_and_conditional_writes_hold() {
    let moto = Moto::start();
    let b = bucket(&moto, None).await;
    // Idempotent.
    b.ensure_bucket().await.unwrap();
    let key = layout::job(7);

    assert!(b.get_doc::<Doc>(&key).await.unwrap().is_none());
    let Put::Written { etag: first } = b
        .put_doc(&key, &doc("first"), Condition::IfNoneMatch)
        .await
        .unwrap()
    else {
        panic!("the first If-None-Match write must land");
    };
    let (read, etag) = b.get_doc::<Doc>(&key).await.unwrap().unwrap();
    assert_eq!(read, doc("first"));
    assert_eq!(etag, first);

    // The second If-None-Match write fails and changes nothing.
    assert_eq!(
        b.put_doc(&key, &doc("second"), Condition::IfNoneMatch)
            .await
            .unwrap(),
        Put::PreconditionFailed
    );
    assert_eq!(
        b.get_doc::<Doc>(&key).await.unwrap().unwrap(),
        (doc("first"), first.clone())
    );

    // If-Match on the current ETag replaces it; on a stale one it fails.
    let Put::Written { etag: second } = b
        .put_doc(&key, &doc("second"), Condition::IfMatch(first.clone()))
        .await
        .unwrap()
    else {
        panic!("If-Match on the current ETag must land");
    };
    assert_ne!(second, first);
    assert_eq!(
        b.put_doc(&key, &doc("third"), Condition::IfMatch(first.clone()))
            .await
            .unwrap(),
        Put::PreconditionFailed
    );
    assert_eq!(
        b.get_doc::<Doc>(&key).await.unwrap().unwrap(),
        (doc("second"), second)
    );
    // If-Match on an object that does not exist fails too, rather than creating it.
    assert_eq!(
        b.put_doc(&layout::job(8), &doc("x"), Condition::IfMatch(first))
            .await
            .unwrap(),
        Put::PreconditionFailed
    );
    assert!(b.get_raw(&layout::job(8)).await.unwrap().is_none());

    // Unconditional writes overwrite; deletes delete, and deleting nothing is fine.
    b.put_doc(&key, &doc("fourth"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        b.get_doc::<Doc>(&key).await.unwrap().unwrap().0,
        doc("fourth")
    );
    b.delete_raw(&key).await.unwrap();
    assert!(b.get_doc::<Doc>(&key).await.unwrap().is_none());
    b.delete_raw(&key).await.unwrap();

    // Keys are relative to the prefix: the same bucket without one sees the full key.
    b.put_doc(&key, &doc("p"), Condition::Always).await.unwrap();
    let root = Bucket::new(&moto.config("handoff", ""), None, Retry::default()).unwrap();
    assert_eq!(
        root.list_keys("").await.unwrap(),
        vec!["cacheon/rounds/7/job.json".to_owned()]
    );
    assert_eq!(
        b.list_keys("").await.unwrap(),
        vec!["rounds/7/job.json".to_owned()]
    );
}

#[tokio::test]
async fn refused_documents_yield_nothing() {
    let moto = Moto::start();
    let authed = bucket(&moto, Some(b"shared secret")).await;
    let plain = bucket(&moto, None).await;
    let other = bucket(&moto, Some(b"another secret")).await;

    // A document the authenticated side wrote reads back.
    authed
        .put_doc("a.json", &doc("ok"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        authed.get_doc::<Doc>("a.json").await.unwrap().unwrap().0,
        doc("ok")
    );

    // Written without the secret: no MAC.
    plain
        .put_doc("b.json", &doc("x"), Condition::Always)
        .await
        .unwrap();
    let err = authed.get_doc::<Doc>("b.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::Unauthenticated));

    // Written with another secret.
    other
        .put_doc("c.json", &doc("x"), Condition::Always)
        .await
        .unwrap();
    let err = authed.get_doc::<Doc>("c.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::BadMac));

    // Tampered with after sealing.
    let (bytes, _) = authed.get_raw("a.json").await.unwrap().unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["note"] = "tampered".into();
    authed
        .put_raw(
            "a.json",
            serde_json::to_vec(&value).unwrap(),
            Condition::Always,
        )
        .await
        .unwrap();
    let err = authed.get_doc::<Doc>("a.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::BadMac), "tampered");

    // A future major version, with or without a secret.
    let future = br#"{"schema_version":"2.0","round_id":7,"note":"x","values":[]}"#;
    plain
        .put_raw("d.json", future.to_vec(), Condition::Always)
        .await
        .unwrap();
    for b in [&plain, &authed] {
        let err = b.get_doc::<Doc>("d.json").await.unwrap_err();
        assert!(
            matches!(refusal(err), EnvelopeError::UnknownVersion(v) if v == "2.0"),
            "major 2"
        );
    }

    // Garbage, and the wrong shape.
    plain
        .put_raw("e.json", b"\xff\x00 not json".to_vec(), Condition::Always)
        .await
        .unwrap();
    let err = plain.get_doc::<Doc>("e.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::NotJson(_)));
    plain
        .put_raw(
            "f.json",
            br#"{"schema_version":"1.0","round_id":"seven"}"#.to_vec(),
            Condition::Always,
        )
        .await
        .unwrap();
    let err = plain.get_doc::<Doc>("f.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::Shape(_)));

    // Larger than any document: refused, raw or not.
    let huge = vec![b' '; cacheon_handoff::envelope::MAX_DOCUMENT_BYTES + 1];
    plain
        .put_raw("g.json", huge, Condition::Always)
        .await
        .unwrap();
    let err = plain.get_raw("g.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::TooLarge));
    let err = plain.get_doc::<Doc>("g.json").await.unwrap_err();
    assert!(matches!(refusal(err), EnvelopeError::TooLarge));
}

#[tokio::test]
async fn s3_errors_are_not_missing_documents() {
    let moto = Moto::start();
    // No such bucket: an error at once (not "no document", and not retried for a minute).
    let missing = Bucket::new(&moto.config("no-such-bucket", "p"), None, Retry::default()).unwrap();
    let started = Instant::now();
    let err = missing.get_doc::<Doc>("x.json").await.unwrap_err();
    assert!(
        matches!(&err, HandoffError::S3 { op: "get", .. }),
        "{err:?}"
    );
    assert!(!err.is_unavailable());
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    let err = missing
        .put_raw("x.json", b"{}".to_vec(), Condition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(matches!(&err, HandoffError::S3 { .. }), "{err:?}");
}

#[tokio::test]
async fn exactly_one_pod_wins_and_leases_expire_renew_and_release() {
    let moto = Moto::start();
    let b = bucket(&moto, Some(b"k")).await;
    let ttl = Duration::from_secs(120);
    let round = 42;

    // Eight pods race for a fresh round.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let b = b.clone();
        tasks.spawn(async move { b.claim(round, &format!("pod-{i}"), ttl, 1000).await });
    }
    let mut won = Vec::new();
    let mut held = Vec::new();
    while let Some(claim) = tasks.join_next().await {
        match claim.unwrap().unwrap() {
            Claim::Won(lease) => won.push(lease),
            Claim::Held { by, expires_at } => held.push((by, expires_at)),
            Claim::Done => panic!("no done.json yet"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one winner: {won:?}");
    let mut lease = won.pop().unwrap();
    assert_eq!(held.len(), 7);
    for (by, expires_at) in &held {
        assert_eq!(by, &lease.pod_id);
        assert_eq!(*expires_at, 1120);
    }
    let (stored, etag) = b
        .get_doc::<LeaseDoc>(&layout::lease(round))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(etag, lease.etag);
    assert_eq!(
        stored,
        LeaseDoc {
            round_id: round,
            pod_id: lease.pod_id.clone(),
            acquired_at: 1000,
            renewed_at: 1000,
            expires_at: 1120,
            released: false,
        }
    );

    // The holder renews.
    let old_etag = lease.etag.clone();
    assert!(b.renew(&mut lease, 1030).await.unwrap());
    assert_eq!(lease.expires_at, 1150);
    assert_ne!(lease.etag, old_etag);
    let stored = b
        .get_doc::<LeaseDoc>(&layout::lease(round))
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!((stored.acquired_at, stored.renewed_at), (1000, 1030));

    // Another pod cannot take it before it expires...
    match b.claim(round, "pod-x", ttl, 1149).await.unwrap() {
        Claim::Held { by, expires_at } => {
            assert_eq!(by, lease.pod_id);
            assert_eq!(expires_at, 1150);
        }
        other => panic!("claimed a live lease: {other:?}"),
    }
    // ...and can once it has.
    let Claim::Won(mut taken) = b.claim(round, "pod-x", ttl, 1150).await.unwrap() else {
        panic!("an expired lease must be claimable");
    };
    assert_eq!(taken.expires_at, 1270);
    // The old holder has lost it: its renewal fails, and its release changes nothing.
    assert!(!b.renew(&mut lease, 1151).await.unwrap());
    b.release(&lease, 1152).await.unwrap();
    assert!(b.renew(&mut taken, 1160).await.unwrap());

    // Released: claimable at once, long before it would expire.
    b.release(&taken, 1161).await.unwrap();
    let stored = b
        .get_doc::<LeaseDoc>(&layout::lease(round))
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(stored.released);
    let Claim::Won(again) = b.claim(round, "pod-y", ttl, 1162).await.unwrap() else {
        panic!("a released lease must be claimable");
    };
    assert_eq!(again.pod_id, "pod-y");
    // pod-x's lease is gone: renewing it fails.
    assert!(!b.renew(&mut taken, 1163).await.unwrap());

    // Eight pods race for an expired lease: one wins again.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let b = b.clone();
        tasks.spawn(async move { b.claim(round, &format!("late-{i}"), ttl, 5000).await });
    }
    let mut winners = 0;
    while let Some(claim) = tasks.join_next().await {
        if let Claim::Won(_) = claim.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one pod takes over an expired lease");

    // A finished round is not claimable, expired lease or not.
    b.put_doc(&layout::done(round), &doc("done"), Condition::IfNoneMatch)
        .await
        .unwrap();
    assert!(matches!(
        b.claim(round, "pod-z", ttl, 99_999).await.unwrap(),
        Claim::Done
    ));
}

#[tokio::test]
async fn a_short_outage_is_waited_out_and_a_long_one_is_reported() {
    let moto = Moto::start();
    let b = bucket(&moto, None).await;
    b.put_doc("doc.json", &doc("before"), Condition::Always)
        .await
        .unwrap();

    // A read during a 3-second outage succeeds once S3 is back.
    moto.pause();
    let started = Instant::now();
    let reader = tokio::spawn({
        let b = b.clone();
        async move { b.get_doc::<Doc>("doc.json").await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    moto.resume();
    let read = reader.await.unwrap().unwrap().unwrap().0;
    assert_eq!(read, doc("before"));
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the read cannot have been answered while S3 was paused"
    );

    // A conditional create that times out may land on its first attempt and be refused on
    // the next (412 against our own object); it must still be reported as written.
    let patient = b.with_retry(Retry {
        attempts: 20,
        initial: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        op_timeout: Duration::from_secs(1),
    });
    moto.pause();
    let writer = tokio::spawn({
        let patient = patient.clone();
        async move {
            patient
                .put_doc("created.json", &doc("mine"), Condition::IfNoneMatch)
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    moto.resume();
    let Put::Written { etag } = writer.await.unwrap().unwrap() else {
        panic!("our own landed write was reported as someone else's");
    };
    assert_eq!(
        b.get_doc::<Doc>("created.json").await.unwrap().unwrap(),
        (doc("mine"), etag)
    );
    // ...while a genuinely foreign object still fails the precondition after retries.
    moto.pause();
    let writer = tokio::spawn({
        let patient = patient.clone();
        async move {
            patient
                .put_doc("created.json", &doc("not mine"), Condition::IfNoneMatch)
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    moto.resume();
    assert_eq!(writer.await.unwrap().unwrap(), Put::PreconditionFailed);

    // With a short retry budget an outage is an Unavailable error, not a hang.
    moto.pause();
    let impatient = b.with_retry(Retry {
        attempts: 2,
        initial: Duration::from_millis(100),
        max_delay: Duration::from_millis(100),
        op_timeout: Duration::from_secs(1),
    });
    let started = Instant::now();
    let err = impatient.get_doc::<Doc>("doc.json").await.unwrap_err();
    let elapsed = started.elapsed();
    moto.resume();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        matches!(&err, HandoffError::Unavailable { op: "get", key, .. } if key == "doc.json"),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // And S3 is usable again afterwards.
    assert!(b.get_doc::<Doc>("doc.json").await.unwrap().is_some());
}

#[tokio::test]
async fn rounds_logs_and_hostile_names() {
    let moto = Moto::start();
    let b = bucket(&moto, None).await;

    for key in [
        "rounds/3/job.json",
        "rounds/12/job.json",
        "rounds/12/results/a.json",
        "rounds/2/logs/x.log",
        "rounds/junk/job.json",
        "rounds/007/job.json",
        "rounds/-/job.json",
        "rounds/5",
        "other/9/job.json",
    ] {
        b.put_raw(key, b"{}".to_vec(), Condition::Always)
            .await
            .unwrap();
    }
    assert_eq!(b.round_ids().await.unwrap(), vec![2, 3, 12]);
    let mut keys = b.list_keys(&layout::round_dir(12)).await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["rounds/12/job.json", "rounds/12/results/a.json"]);

    // Listing goes past S3's page of 1000 keys.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let b = b.clone();
        tasks.spawn(async move {
            for i in (worker..1003).step_by(8) {
                b.put_raw(
                    &layout::log(99, &format!("l{i:04}")),
                    vec![b'x'],
                    Condition::Always,
                )
                .await
                .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let logs = b.list_keys("rounds/99/logs/").await.unwrap();
    assert_eq!(logs.len(), 1003);
    assert!(logs.contains(&"rounds/99/logs/l1002.log".to_owned()));
    assert_eq!(b.round_ids().await.unwrap(), vec![2, 3, 12, 99]);

    // Logs keep their tail, and are overwritten.
    let key = layout::log(3, "king");
    b.put_log(&key, b"0123456789", 4).await.unwrap();
    assert_eq!(b.get_raw(&key).await.unwrap().unwrap().0, b"6789");
    b.put_log(&key, b"short", 100).await.unwrap();
    assert_eq!(b.get_raw(&key).await.unwrap().unwrap().0, b"short");
    // The cut does not split a character: of "ééé" (6 bytes), the last 3 bytes start
    // mid-character, so the log keeps the last whole one.
    b.put_log(&key, "ééé".as_bytes(), 3).await.unwrap();
    assert_eq!(b.get_raw(&key).await.unwrap().unwrap().0, "é".as_bytes());

    // Hostile ids stay inside results/ and still round-trip.
    let round = 77;
    let hostile = ["../x", "a/b", "../../rounds/1/done", "ключ ✓", "5Grw:123"];
    for id in hostile {
        b.put_doc(&layout::result(round, id), &doc(id), Condition::IfNoneMatch)
            .await
            .unwrap();
    }
    let results = b.list_keys(&layout::results_dir(round)).await.unwrap();
    assert_eq!(results.len(), hostile.len());
    for key in &results {
        let name = key.strip_prefix("rounds/77/results/").unwrap();
        assert!(!name.contains('/'), "{key}");
    }
    assert!(results.contains(&"rounds/77/results/5Grw:123.json".to_owned()));
    for id in hostile {
        let (read, _) = b
            .get_doc::<Doc>(&layout::result(round, id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.note, id);
    }
    // Nothing landed outside round 77's results.
    assert_eq!(b.round_ids().await.unwrap(), vec![2, 3, 12, 77, 99]);
    assert!(!b.exists(&layout::done(1)).await.unwrap());
}
