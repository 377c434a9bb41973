//! Contract cases for scoped API keys: found by hash, listed without secrets, revoked at once,
//! last use written at most once a minute.

use chrono::Duration;

use super::t0;
use crate::domain::api_key::{ApiKey, Scope, generate_key, hash_key, shown_prefix};
use crate::domain::new_id;
use crate::ports::{Store, StoreError};

fn new_key(name: &str, scopes: Vec<Scope>) -> (ApiKey, String) {
    let text = generate_key();
    let key = ApiKey {
        id: new_id(),
        name: name.into(),
        scopes,
        trigger_ids: vec![new_id()],
        prefix: shown_prefix(&text),
        created_at: t0(),
        expires_at: Some(t0() + Duration::days(30)),
        last_used_at: None,
    };
    (key, hash_key(&text))
}

pub async fn api_keys_are_found_listed_and_revoked<S: Store>(store: &S) {
    let (a, a_hash) = new_key("deploy bot", vec![Scope::Fire, Scope::TriggersRead]);
    let (b, b_hash) = new_key("dashboard", vec![Scope::Admin]);
    store.insert_api_key(&a, &a_hash).await.unwrap();
    store.insert_api_key(&b, &b_hash).await.unwrap();

    let (found, hash) = store.api_key_by_hash(&a_hash).await.unwrap().unwrap();
    assert_eq!(found, a);
    assert_eq!(hash, a_hash);
    assert!(
        store
            .api_key_by_hash(&hash_key("etp_unknown"))
            .await
            .unwrap()
            .is_none()
    );

    let listed = store.list_api_keys().await.unwrap();
    let mut want = vec![a.clone(), b.clone()];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(listed, want, "in id order");

    assert!(store.delete_api_key(&a.id).await.unwrap());
    assert!(!store.delete_api_key(&a.id).await.unwrap(), "already gone");
    assert!(store.api_key_by_hash(&a_hash).await.unwrap().is_none());
    assert_eq!(store.list_api_keys().await.unwrap(), vec![b]);
}

pub async fn duplicate_api_key_is_rejected<S: Store>(store: &S) {
    let (a, hash) = new_key("once", vec![Scope::EventsRead]);
    store.insert_api_key(&a, &hash).await.unwrap();
    let again = store.insert_api_key(&a, &hash).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists)), "{again:?}");
}

pub async fn api_key_use_is_written_once_a_minute<S: Store>(store: &S) {
    let (a, hash) = new_key("busy", vec![Scope::Fire]);
    store.insert_api_key(&a, &hash).await.unwrap();
    let now = t0() + Duration::seconds(10);
    let minute = Duration::seconds(60);
    assert!(store.touch_api_key(&hash, now, now - minute).await.unwrap());
    let later = now + Duration::seconds(30);
    assert!(
        !store
            .touch_api_key(&hash, later, later - minute)
            .await
            .unwrap(),
        "written less than a minute ago"
    );
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(now));
    let next = now + Duration::seconds(61);
    assert!(
        store
            .touch_api_key(&hash, next, next - minute)
            .await
            .unwrap()
    );
    let (found, _) = store.api_key_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(next));
    assert!(
        !store
            .touch_api_key(&hash_key("etp_gone"), next, next - minute)
            .await
            .unwrap(),
        "no such key: nothing written"
    );
}
