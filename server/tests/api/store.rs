//! The store conformance suite: every `Store` operation, run against SQLite and Postgres.

use chrono::{Duration, TimeZone, Utc};
use flotilla_protocol::tokens::Role;
use flotilla_server::store::{
    self, AuditOutcome, AuditQuery, Backend, DeviceRecord, EnrollmentTokenRecord, NewAuditEntry,
    NewReport, NewToken, Store, StoreError,
};
use std::sync::Arc;
use uuid::Uuid;

use crate::helpers::{fresh_postgres_database, Db};

async fn open(db: Db) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(secrecy::SecretString::from(fresh_postgres_database().await)),
    };
    let store = store::connect(url.as_ref(), dir.path(), 4).await.unwrap();
    (store, dir)
}

fn new_token(name: &str, role: Role, hash: &str) -> NewToken {
    NewToken {
        id: Uuid::new_v4(),
        name: name.into(),
        role,
        secret_hash: hash.into(),
        prefix: "flt_abcdefgh".into(),
        // Whole seconds: both backends must give back exactly what was stored.
        created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        expires_at: None,
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let (s, _d) = super::open(crate::helpers::Db::Sqlite).await;
                    assert_eq!(s.backend(), super::Backend::Sqlite);
                    super::$name(s).await
                }
                #[tokio::test]
                async fn postgres() {
                    let (s, _d) = super::open(crate::helpers::Db::Postgres).await;
                    assert_eq!(s.backend(), super::Backend::Postgres);
                    super::$name(s).await
                }
            }
        )+
    };
}

conformance!(
    ping_answers,
    tokens_insert_and_find,
    duplicate_token_hash_conflicts,
    tokens_list_in_creation_order,
    revoke_is_idempotent_and_keeps_first_time,
    revoke_unknown_is_not_found,
    touch_updates_at_most_once_a_minute,
    audit_appends_and_pages_newest_first,
    audit_filters_by_actor,
    reports_are_recorded_in_batches_once_each,
);

async fn ping_answers(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
}

async fn tokens_insert_and_find(s: Arc<dyn Store>) {
    assert_eq!(s.count_tokens().await.unwrap(), 0);
    let mut t = new_token("ci", Role::Publisher, "h1");
    t.expires_at = Some(t.created_at + Duration::days(3));
    let rec = s.insert_token(&t).await.unwrap();
    assert_eq!(rec.id, t.id);
    assert_eq!(rec.name, "ci");
    assert_eq!(rec.role, Role::Publisher);
    assert_eq!(rec.created_at, t.created_at);
    assert_eq!(rec.expires_at, t.expires_at);
    assert_eq!(rec.revoked_at, None);
    assert_eq!(s.count_tokens().await.unwrap(), 1);
    let found = s.token_by_hash("h1").await.unwrap().unwrap();
    assert_eq!(found, rec);
    assert!(s.token_by_hash("nope").await.unwrap().is_none());
}

async fn duplicate_token_hash_conflicts(s: Arc<dyn Store>) {
    s.insert_token(&new_token("a", Role::Viewer, "same"))
        .await
        .unwrap();
    let err = s
        .insert_token(&new_token("b", Role::Viewer, "same"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.count_tokens().await.unwrap(), 1);
}

async fn tokens_list_in_creation_order(s: Arc<dyn Store>) {
    let mut a = new_token("first", Role::Admin, "ha");
    let mut b = new_token("second", Role::Operator, "hb");
    a.created_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    b.created_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
    s.insert_token(&b).await.unwrap();
    s.insert_token(&a).await.unwrap();
    let names: Vec<_> = s
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["first", "second"]);
}

async fn revoke_is_idempotent_and_keeps_first_time(s: Arc<dyn Store>) {
    let t = s
        .insert_token(&new_token("x", Role::Viewer, "hx"))
        .await
        .unwrap();
    let first = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let rec = s.revoke_token(t.id, first).await.unwrap();
    assert_eq!(rec.revoked_at, Some(first));
    assert!(!rec.is_active(first));
    let again = s
        .revoke_token(t.id, first + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(first));
    let found = s.token_by_hash("hx").await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(first));
}

async fn revoke_unknown_is_not_found(s: Arc<dyn Store>) {
    let err = s
        .revoke_token(Uuid::new_v4(), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn touch_updates_at_most_once_a_minute(s: Arc<dyn Store>) {
    let t = s
        .insert_token(&new_token("x", Role::Viewer, "ht"))
        .await
        .unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    s.touch_token(t.id, t0).await.unwrap();
    s.touch_token(t.id, t0 + Duration::seconds(30))
        .await
        .unwrap();
    let rec = s.token_by_hash("ht").await.unwrap().unwrap();
    assert_eq!(
        rec.last_used_at,
        Some(t0),
        "a touch within a minute is skipped"
    );
    s.touch_token(t.id, t0 + Duration::seconds(61))
        .await
        .unwrap();
    let rec = s.token_by_hash("ht").await.unwrap().unwrap();
    assert_eq!(rec.last_used_at, Some(t0 + Duration::seconds(61)));
}

fn audit(actor: &str, status: u16) -> NewAuditEntry {
    NewAuditEntry {
        at: Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap(),
        actor: actor.into(),
        token_id: Some(Uuid::new_v4()),
        method: "POST".into(),
        route: "/api/v1/tokens".into(),
        path: "/api/v1/tokens".into(),
        status,
        outcome: AuditOutcome::from_status(status),
        detail: Some(serde_json::json!({"name": actor})),
    }
}

async fn audit_appends_and_pages_newest_first(s: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5u16 {
        ids.push(s.append_audit(&audit("alice", 200 + i)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let page = s
        .list_audit(&AuditQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[4], ids[3]]
    );
    assert_eq!(page[0].status, 204);
    assert_eq!(page[0].outcome, "success");
    assert_eq!(page[0].detail, Some(serde_json::json!({"name": "alice"})));
    let older = s
        .list_audit(&AuditQuery {
            limit: 10,
            before_id: Some(ids[3]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[2], ids[1], ids[0]]
    );
}

async fn audit_filters_by_actor(s: Arc<dyn Store>) {
    s.append_audit(&audit("alice", 201)).await.unwrap();
    s.append_audit(&audit("bob", 403)).await.unwrap();
    let bob = s
        .list_audit(&AuditQuery {
            limit: 10,
            actor: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].actor, "bob");
    assert_eq!(bob[0].outcome, "denied");
    s.append_audit(&audit("device:gw-1", 200)).await.unwrap();
    let people = s
        .list_audit(&AuditQuery {
            limit: 10,
            exclude_devices: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        people.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        ["bob", "alice"]
    );
}

async fn enrolled_device(s: &dyn Store, token_hash: &str, name: &str) -> DeviceRecord {
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    let device = DeviceRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        public_key: "AAAA".into(),
        credential_hash: format!("cred-{name}"),
        status: "active".into(),
        labels: Default::default(),
        hardware: serde_json::json!({}),
        agent_version: "test".into(),
        enrollment_token_id: None,
        enrolled_at: t0,
        last_seen_at: Some(t0),
        desired_sequence: 0,
        desired_hash: None,
        desired_envelope: None,
        desired_expires_at: None,
        applied_sequence: 0,
        last_report_seq: 0,
        slot_status: serde_json::json!([]),
        last_health: None,
        next_credential_hash: None,
        credential_rotation_requested_at: None,
    };
    s.enroll_device(token_hash, &device).await.unwrap()
}

async fn reports_are_recorded_in_batches_once_each(s: Arc<dyn Store>) {
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    s.insert_enrollment_token(&EnrollmentTokenRecord {
        id: Uuid::new_v4(),
        name: "t".into(),
        secret_hash: "et".into(),
        prefix: "fle_abc".into(),
        labels: Default::default(),
        require_approval: false,
        max_uses: 2,
        uses: 0,
        created_by: "test".into(),
        created_at: t0,
        expires_at: t0 + Duration::days(3650),
        revoked_at: None,
        allowed_device_labels: Vec::new(),
    })
    .await
    .unwrap();
    let a = enrolled_device(s.as_ref(), "et", "a").await;
    let b = enrolled_device(s.as_ref(), "et", "b").await;
    let report = |device: Uuid, seq: u64| NewReport {
        device_id: device,
        report_seq: seq,
        at: t0 + Duration::seconds(seq as i64),
        report: serde_json::json!({ "report_seq": seq }),
        applied_sequence: seq,
        slot_status: serde_json::json!([{ "seq": seq }]),
        health: None,
    };
    // Replays and older counters in the same batch are skipped, the rest recorded in order.
    let recorded = s
        .record_reports(&[
            report(a.id, 1),
            report(b.id, 1),
            report(a.id, 2),
            report(a.id, 2),
            report(b.id, 1),
            report(Uuid::new_v4(), 1),
        ])
        .await
        .unwrap();
    assert_eq!(recorded, vec![true, true, true, false, false, false]);
    assert_eq!(s.list_reports(a.id, 10).await.unwrap().len(), 2);
    assert_eq!(s.list_reports(b.id, 10).await.unwrap().len(), 1);
    let stored = s.get_device(a.id).await.unwrap().unwrap();
    assert_eq!((stored.last_report_seq, stored.applied_sequence), (2, 2));
    assert_eq!(stored.slot_status, serde_json::json!([{ "seq": 2 }]));

    // Contact times in one batch; each device at most once every five seconds.
    let later = t0 + Duration::seconds(100);
    s.touch_devices(&[(a.id, later), (b.id, later)])
        .await
        .unwrap();
    s.touch_devices(&[(a.id, later + Duration::seconds(2))])
        .await
        .unwrap();
    for id in [a.id, b.id] {
        let d = s.get_device(id).await.unwrap().unwrap();
        assert_eq!(d.last_seen_at, Some(later));
    }
}
