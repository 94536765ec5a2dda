//! The cache decision, as pure functions of the cache entry, the clock
//! reading and the fetch outcome: hit, stale, lock-and-fetch,
//! serve-through-outage, refuse. No files, no network, no wall clock: the
//! flow (`run`) reads the entry, takes the lock, calls the source and writes
//! what this module says to write, passing `now` in. Each row of README's
//! "The cache" table that is a decision has a unit test below with a fake
//! clock and a fake source.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::{self, CacheKey, Entry};
use crate::error::{Kind, SourceError};
use crate::expiry::{self, Freshness, Schedule};
use crate::image::ImageRef;
use crate::protocol::{AuthConfig, CacheKeyType, Response};

/// How to answer this request, whatever the answer's source.
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    pub api_version: &'a str,
    /// The service-account token's expiry: no `cacheDuration` reaches past it.
    pub not_after: Option<i64>,
    /// The host has a path-scoped static key: every answer for it is
    /// `Image`-scoped, since the kubelet consults its registry-wide entry
    /// before it asks us about the next image of that host.
    pub image_only: bool,
}

impl Reply<'_> {
    /// The response for `auth`, with `duration` capped at the pod token's
    /// expiry and the key type narrowed to `Image` where the host needs it.
    pub fn answer(
        &self,
        key_type: CacheKeyType,
        duration: Duration,
        auth: BTreeMap<String, AuthConfig>,
        now: i64,
    ) -> Response {
        let duration = match self.not_after {
            Some(t) => duration.min(Duration::from_secs(t.saturating_sub(now).max(0) as u64)),
            None => duration,
        };
        let key_type = if self.image_only {
            CacheKeyType::Image
        } else {
            key_type
        };
        Response::new(self.api_version, key_type, duration, auth)
    }
}

/// The request facts the decision needs.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub image: &'a ImageRef,
    pub reply: Reply<'a>,
    /// One token serves every host of the source (ECR in a region, Google):
    /// an entry filled for another host is re-keyed for this one.
    pub shares_token_across_hosts: bool,
    /// The pod's own identity is used: a refusal of its token is not served
    /// from the stale cache.
    pub per_pod: bool,
}

/// What the cache entry means for this request.
#[derive(Debug)]
pub enum Lookup {
    /// Before its refresh point: the answer.
    Hit(Response),
    /// Past its refresh point but valid: fetch, and keep it for an outage.
    Stale(Entry),
    /// Nothing usable: fetch.
    Miss(Miss),
}

/// Why an entry was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Absent,
    /// Its auth keys do not match the image under the kubelet's rules.
    KeysDoNotMatch,
    /// Fetched more than 5 minutes in the future: the clock moved back.
    FromTheFuture,
    Expired,
}

/// How far in the future an entry may say it was fetched (clock jitter).
const FUTURE_SLACK: i64 = 300;

/// Decides what the entry read for this request's key means at `now`.
pub fn lookup(entry: Option<Entry>, req: &Request, now: i64) -> Lookup {
    let Some(mut entry) = entry else {
        return Lookup::Miss(Miss::Absent);
    };
    if req.shares_token_across_hosts {
        entry.auth = for_this_host(entry.auth, req.image);
    }
    if !auth_matches(&entry.auth, req.image) {
        return Lookup::Miss(Miss::KeysDoNotMatch);
    }
    if entry.fetched_at > now + FUTURE_SLACK {
        return Lookup::Miss(Miss::FromTheFuture);
    }
    match expiry::freshness(&entry.schedule(), now) {
        Freshness::Fresh { cache_duration } => {
            Lookup::Hit(
                req.reply
                    .answer(entry.cache_key_type, cache_duration, entry.auth, now),
            )
        }
        Freshness::Stale { .. } => Lookup::Stale(entry),
        Freshness::Expired => Lookup::Miss(Miss::Expired),
    }
}

/// What a source produced, ready to answer and cache.
#[derive(Debug, Clone)]
pub struct Answer {
    pub auth: BTreeMap<String, AuthConfig>,
    pub key_type: CacheKeyType,
    pub schedule: Schedule,
}

/// A token's schedule: fetched at `now`, expiring when upstream said, but
/// never after the pod's service-account token (`not_after`), refreshed
/// `jitter` (0 to 1, see [`expiry::jittered`]) of the window early. `capped`
/// says the claimed life was over 12 hours.
pub fn token_schedule(now: i64, expires_at: i64, not_after: Option<i64>, jitter: f64) -> Schedule {
    let expires_at = not_after.map_or(expires_at, |t| expires_at.min(t));
    expiry::jittered(expiry::schedule(now, expires_at), jitter)
}

/// Why a fresh token is answered once and not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OddToken {
    /// Less than the refresh margin left.
    InsideMargin { remaining: Duration },
    /// Already past its expiry (clock skew, a test double).
    AlreadyExpired { expires_at: i64 },
}

/// What to do once the source has answered or failed.
#[derive(Debug)]
pub enum AfterFetch {
    /// Write `entry` under the key and answer.
    Store {
        entry: Box<Entry>,
        response: Response,
    },
    /// Answer with `cacheDuration: 0s`; cache nothing.
    Once { response: Response, odd: OddToken },
    /// Upstream failed but the stale entry is valid: serve it, briefly.
    ServeThroughOutage {
        response: Response,
        error: SourceError,
        valid_for: i64,
    },
    /// Fail the run with `error`. `dropped_stale` says a valid stale entry
    /// was not served because the pod's identity was refused.
    Refuse {
        error: SourceError,
        dropped_stale: bool,
    },
}

/// Decides from the fetch outcome, the stale entry (if any) and `now`.
pub fn after_fetch(
    outcome: Result<Answer, SourceError>,
    stale: Option<Entry>,
    key: &CacheKey,
    req: &Request,
    now: i64,
) -> AfterFetch {
    match outcome {
        // The kubelet would silently ignore a key that does not match:
        // refuse to answer with one.
        Ok(answer) if !auth_matches(&answer.auth, req.image) => AfterFetch::Refuse {
            error: SourceError::new(
                "building the response",
                format!(
                    "internal error: an auth key does not match {} under the kubelet's rules",
                    req.image.name()
                ),
            ),
            dropped_stale: false,
        },
        Ok(answer) => fresh(answer, key, req, now),
        Err(error) => {
            // The identity provider no longer accepts this service account:
            // its cached credential is not served in place of that answer,
            // as it would be through an outage.
            let refused = req.per_pod && error.kind == Kind::Refused;
            match stale {
                Some(entry) if !refused && now < entry.expires_at => {
                    let s = entry.schedule();
                    let d = expiry::stale_serve_duration(&s, now);
                    AfterFetch::ServeThroughOutage {
                        response: req.reply.answer(entry.cache_key_type, d, entry.auth, now),
                        error,
                        valid_for: s.expires_at - now,
                    }
                }
                stale => AfterFetch::Refuse {
                    error,
                    dropped_stale: refused && stale.is_some(),
                },
            }
        }
    }
}

fn fresh(a: Answer, key: &CacheKey, req: &Request, now: i64) -> AfterFetch {
    let s = a.schedule;
    match expiry::freshness(&s, now) {
        Freshness::Fresh { cache_duration } => {
            let entry = Entry {
                format: cache::FORMAT,
                key: key.as_str().to_string(),
                registry: req.image.registry.clone(),
                cache_key_type: a.key_type,
                auth: a.auth.clone(),
                fetched_at: s.fetched_at,
                expires_at: s.expires_at,
                // Stored when it does not follow from the token's life: a
                // fixed window, or a jittered refresh point.
                refresh_at: (s.refresh_at
                    != expiry::schedule(s.fetched_at, s.expires_at).refresh_at)
                    .then_some(s.refresh_at),
            };
            AfterFetch::Store {
                entry: Box::new(entry),
                response: req.reply.answer(a.key_type, cache_duration, a.auth, now),
            }
        }
        Freshness::Stale { remaining } => AfterFetch::Once {
            response: req.reply.answer(a.key_type, Duration::ZERO, a.auth, now),
            odd: OddToken::InsideMargin { remaining },
        },
        Freshness::Expired => AfterFetch::Once {
            response: req.reply.answer(a.key_type, Duration::ZERO, a.auth, now),
            odd: OddToken::AlreadyExpired {
                expires_at: s.expires_at,
            },
        },
    }
}

/// Every key we return must match the image under the kubelet's keyring rules.
pub fn auth_matches(auth: &BTreeMap<String, AuthConfig>, image: &ImageRef) -> bool {
    let name = image.name();
    !auth.is_empty()
        && auth
            .keys()
            .all(|k| kubelet_config::matching::auth_key_matches(k, &name))
}

/// A shared token's entry holds the key of the host that filled it; the
/// answer names the host asked about. Token answers hold one credential.
pub fn for_this_host(
    auth: BTreeMap<String, AuthConfig>,
    image: &ImageRef,
) -> BTreeMap<String, AuthConfig> {
    if auth.len() != 1 || auth.contains_key(&image.registry) {
        return auth;
    }
    auth.into_values()
        .map(|creds| (image.registry.clone(), creds))
        .collect()
}

#[cfg(test)]
mod tests {
    //! Given an entry and a clock reading, when the source answers or fails,
    //! then the decision. Rows are README's "The cache" table.
    use super::*;
    use crate::secret::Secret;

    const T0: i64 = 1_800_000_000;
    const H: i64 = 3600;
    const ECR_A: &str = "111111111111.dkr.ecr.us-west-2.amazonaws.com";
    const ECR_B: &str = "222222222222.dkr.ecr.us-west-2.amazonaws.com";

    /// A fake clock: seconds from T0.
    fn at(secs: i64) -> i64 {
        T0 + secs
    }

    fn image(name: &str) -> ImageRef {
        ImageRef::parse(name).unwrap()
    }

    fn req<'a>(image: &'a ImageRef) -> Request<'a> {
        Request {
            image,
            reply: Reply {
                api_version: "credentialprovider.kubelet.k8s.io/v1",
                not_after: None,
                image_only: false,
            },
            shares_token_across_hosts: false,
            per_pod: false,
        }
    }

    fn auth(key: &str) -> BTreeMap<String, AuthConfig> {
        [(
            key.to_string(),
            AuthConfig {
                username: "AWS".into(),
                password: Secret::new("pw"),
            },
        )]
        .into()
    }

    fn key() -> CacheKey {
        CacheKey::new(&[("source", "fake")])
    }

    /// A fake source answering a token fetched at `now` that lives `life` seconds.
    fn source_ok(registry: &str, now: i64, life: i64) -> Result<Answer, SourceError> {
        Ok(Answer {
            auth: auth(registry),
            key_type: CacheKeyType::Registry,
            schedule: expiry::schedule(now, now + life),
        })
    }

    /// A fake source failing with `kind`.
    fn source_err(kind: Kind) -> Result<Answer, SourceError> {
        Err(SourceError::new("fake GetToken", "no").with_kind(kind))
    }

    /// An entry as a fetch at `fetched` of a token living `life` seconds stored it.
    fn entry(registry: &str, fetched: i64, life: i64) -> Entry {
        let im = image(&format!("{registry}/app"));
        match after_fetch(
            source_ok(registry, fetched, life),
            None,
            &key(),
            &req(&im),
            fetched,
        ) {
            AfterFetch::Store { entry, .. } => *entry,
            other => panic!("{other:?}"),
        }
    }

    fn duration(r: &Response) -> &str {
        r.cache_duration.as_deref().unwrap()
    }

    /// Row "expiry": refresh ahead by a quarter of the life (ECR 12h: at
    /// 11h); cacheDuration is the time left until that refresh point.
    #[test]
    fn expiry_hit_answers_until_the_refresh_point() {
        let im = image(&format!("{ECR_A}/app"));
        let e = entry(ECR_A, at(0), 12 * H);
        match lookup(Some(e.clone()), &req(&im), at(10 * H)) {
            Lookup::Hit(r) => assert_eq!(duration(&r), "1h0m0s"),
            other => panic!("{other:?}"),
        }
        // Past the refresh point, still valid: stale, so lock and fetch.
        assert!(matches!(
            lookup(Some(e.clone()), &req(&im), at(11 * H)),
            Lookup::Stale(_)
        ));
        // Never served past its expiry.
        assert!(matches!(
            lookup(Some(e), &req(&im), at(12 * H)),
            Lookup::Miss(Miss::Expired)
        ));
    }

    /// Row "expiry" (a miss): no entry means lock and fetch; the fetched
    /// token is stored with its schedule and answered until its refresh point.
    #[test]
    fn expiry_miss_fetches_and_stores() {
        let im = image(&format!("{ECR_A}/app"));
        assert!(matches!(
            lookup(None, &req(&im), at(0)),
            Lookup::Miss(Miss::Absent)
        ));
        match after_fetch(source_ok(ECR_A, at(0), H), None, &key(), &req(&im), at(0)) {
            AfterFetch::Store { entry, response } => {
                assert_eq!(duration(&response), "45m0s");
                assert_eq!(entry.expires_at, at(H));
                assert_eq!(entry.refresh_at, None);
                assert_eq!(entry.key, key().as_str());
            }
            other => panic!("{other:?}"),
        }
    }

    /// Row "expiry" for static credentials: fresh for the TTL, no margin.
    #[test]
    fn expiry_static_credentials_are_fresh_for_the_ttl() {
        let im = image("quay.io/org/app");
        let answer = Answer {
            auth: auth("quay.io"),
            key_type: CacheKeyType::Registry,
            schedule: expiry::fixed(at(0), Duration::from_secs(300)),
        };
        let AfterFetch::Store { entry, response } =
            after_fetch(Ok(answer), None, &key(), &req(&im), at(0))
        else {
            panic!("not stored")
        };
        assert_eq!(duration(&response), "5m0s");
        assert_eq!(entry.refresh_at, Some(at(300)));
        assert!(matches!(
            lookup(Some(*entry.clone()), &req(&im), at(299)),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            lookup(Some(*entry), &req(&im), at(300)),
            Lookup::Miss(Miss::Expired)
        ));
    }

    /// Row "odd tokens": already expired: answered with 0s, not cached.
    #[test]
    fn odd_tokens_already_expired_answer_once() {
        let im = image(&format!("{ECR_A}/app"));
        let outcome = Ok(Answer {
            auth: auth(ECR_A),
            key_type: CacheKeyType::Registry,
            schedule: expiry::schedule(at(0), at(-10)),
        });
        match after_fetch(outcome, None, &key(), &req(&im), at(0)) {
            AfterFetch::Once { response, odd } => {
                assert_eq!(duration(&response), "0s");
                assert_eq!(
                    odd,
                    OddToken::AlreadyExpired {
                        expires_at: at(-10)
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Row "odd tokens": less than the margin left: the same.
    #[test]
    fn odd_tokens_inside_the_margin_answer_once() {
        let im = image(&format!("{ECR_A}/app"));
        // A 4-minute token: the margin is at least 5 minutes.
        match after_fetch(source_ok(ECR_A, at(0), 240), None, &key(), &req(&im), at(0)) {
            AfterFetch::Once { response, odd } => {
                assert_eq!(duration(&response), "0s");
                assert_eq!(
                    odd,
                    OddToken::InsideMargin {
                        remaining: Duration::from_secs(240)
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Row "odd tokens": claims to live more than 12h: treated as 12h.
    #[test]
    fn odd_tokens_longer_than_twelve_hours_are_capped() {
        let s = token_schedule(at(0), at(48 * H), None, 0.0);
        assert!(s.capped);
        assert_eq!(s.expires_at, at(12 * H));
        let im = image(&format!("{ECR_A}/app"));
        let outcome = Ok(Answer {
            auth: auth(ECR_A),
            key_type: CacheKeyType::Registry,
            schedule: s,
        });
        let AfterFetch::Store { entry, response } =
            after_fetch(outcome, None, &key(), &req(&im), at(0))
        else {
            panic!("not stored")
        };
        assert_eq!(entry.expires_at, at(12 * H));
        assert_eq!(duration(&response), "11h0m0s");
    }

    /// Row "upstream down": a cached token past its refresh point but still
    /// valid is served with cacheDuration of at most 60s.
    #[test]
    fn upstream_down_serves_the_stale_token_briefly() {
        let im = image(&format!("{ECR_A}/app"));
        let e = entry(ECR_A, at(0), 12 * H);
        let Lookup::Stale(stale) = lookup(Some(e), &req(&im), at(11 * H + 60)) else {
            panic!("not stale")
        };
        match after_fetch(
            source_err(Kind::Unavailable),
            Some(stale.clone()),
            &key(),
            &req(&im),
            at(11 * H + 60),
        ) {
            AfterFetch::ServeThroughOutage {
                response,
                valid_for,
                error,
            } => {
                assert_eq!(duration(&response), "1m0s");
                assert_eq!(valid_for, H - 60);
                assert_eq!(error.step, "fake GetToken");
            }
            other => panic!("{other:?}"),
        }
        // Less than 60s left: no longer than the token.
        match after_fetch(
            source_err(Kind::Unavailable),
            Some(stale),
            &key(),
            &req(&im),
            at(12 * H - 20),
        ) {
            AfterFetch::ServeThroughOutage { response, .. } => {
                assert_eq!(duration(&response), "20s")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Row "upstream down": once expired, the run fails.
    #[test]
    fn upstream_down_with_an_expired_entry_fails() {
        let im = image(&format!("{ECR_A}/app"));
        let stale = entry(ECR_A, at(0), 12 * H);
        match after_fetch(
            source_err(Kind::Unavailable),
            Some(stale),
            &key(),
            &req(&im),
            at(12 * H),
        ) {
            AfterFetch::Refuse {
                error,
                dropped_stale,
            } => {
                assert_eq!(error.kind, Kind::Unavailable);
                assert!(!dropped_stale);
            }
            other => panic!("{other:?}"),
        }
        // And with nothing cached, the source's error is the run's.
        assert!(matches!(
            after_fetch(
                source_err(Kind::Unavailable),
                None,
                &key(),
                &req(&im),
                at(0)
            ),
            AfterFetch::Refuse { .. }
        ));
    }

    /// Per-pod refusal rule: a refused pod identity is not served from the
    /// stale cache.
    #[test]
    fn a_refused_pod_identity_is_not_served_from_the_stale_cache() {
        let im = image(&format!("{ECR_A}/app"));
        let stale = entry(ECR_A, at(0), 12 * H);
        let pod = Request {
            per_pod: true,
            ..req(&im)
        };
        match after_fetch(
            source_err(Kind::Refused),
            Some(stale),
            &key(),
            &pod,
            at(11 * H + 60),
        ) {
            AfterFetch::Refuse {
                error,
                dropped_stale,
            } => {
                assert_eq!(error.kind, Kind::Refused);
                assert!(dropped_stale);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Per-pod refusal rule: an outage is served from the stale cache, for
    /// a pod as for the node; and a node run's "refusal" is an outage.
    #[test]
    fn an_outage_is_served_for_a_pod_and_a_node_refusal_is_an_outage() {
        let im = image(&format!("{ECR_A}/app"));
        let stale = entry(ECR_A, at(0), 12 * H);
        let pod = Request {
            per_pod: true,
            ..req(&im)
        };
        let now = at(11 * H + 60);
        assert!(matches!(
            after_fetch(
                source_err(Kind::Unavailable),
                Some(stale.clone()),
                &key(),
                &pod,
                now
            ),
            AfterFetch::ServeThroughOutage { .. }
        ));
        assert!(matches!(
            after_fetch(
                source_err(Kind::Config),
                Some(stale.clone()),
                &key(),
                &pod,
                now
            ),
            AfterFetch::ServeThroughOutage { .. }
        ));
        assert!(matches!(
            after_fetch(
                source_err(Kind::Refused),
                Some(stale),
                &key(),
                &req(&im),
                now
            ),
            AfterFetch::ServeThroughOutage { .. }
        ));
    }

    /// Per-pod rule: no answer outlives the service-account token it came
    /// with (`not_after` caps cacheDuration, on a hit, a fetch and an outage),
    /// and the token's expiry caps the credential's schedule.
    #[test]
    fn not_after_caps_every_answer() {
        let im = image(&format!("{ECR_A}/app"));
        let pod = Request {
            reply: Reply {
                not_after: Some(at(600)),
                ..req(&im).reply
            },
            per_pod: true,
            ..req(&im)
        };
        let e = entry(ECR_A, at(0), 12 * H);
        match lookup(Some(e), &pod, at(0)) {
            Lookup::Hit(r) => assert_eq!(duration(&r), "10m0s"),
            other => panic!("{other:?}"),
        }
        match after_fetch(source_ok(ECR_A, at(0), 12 * H), None, &key(), &pod, at(0)) {
            AfterFetch::Store { response, .. } => assert_eq!(duration(&response), "10m0s"),
            other => panic!("{other:?}"),
        }
        let s = token_schedule(at(0), at(12 * H), Some(at(H)), 0.0);
        assert_eq!((s.expires_at, s.refresh_at), (at(H), at(45 * 60)));
        assert!(!s.capped);
        // A token already past: 0s.
        let r = pod.reply.answer(
            CacheKeyType::Registry,
            Duration::from_secs(60),
            auth(ECR_A),
            at(700),
        );
        assert_eq!(duration(&r), "0s");
    }

    /// Path-scoped hosts: every answer is Image-scoped (image_only), from
    /// the cache as from upstream.
    #[test]
    fn image_only_scopes_every_answer_to_the_image() {
        let im = image(&format!("{ECR_A}/app"));
        let scoped = Request {
            reply: Reply {
                image_only: true,
                ..req(&im).reply
            },
            ..req(&im)
        };
        let e = entry(ECR_A, at(0), 12 * H);
        let Lookup::Hit(r) = lookup(Some(e), &scoped, at(0)) else {
            panic!("no hit")
        };
        assert_eq!(r.cache_key_type, CacheKeyType::Image);
        let AfterFetch::Store { response, entry } =
            after_fetch(source_ok(ECR_A, at(0), H), None, &key(), &scoped, at(0))
        else {
            panic!("not stored")
        };
        assert_eq!(response.cache_key_type, CacheKeyType::Image);
        // The entry keeps the source's own scope; only the answer narrows.
        assert_eq!(entry.cache_key_type, CacheKeyType::Registry);
    }

    /// Row "key": one token serves every host of an ECR region (or of
    /// Google): an entry filled for account A answers account B under B's
    /// host; a source that does not share tokens gets a miss.
    #[test]
    fn for_this_host_rekeys_a_shared_token() {
        let e = entry(ECR_A, at(0), 12 * H);
        let im = image(&format!("{ECR_B}/app"));
        let shared = Request {
            shares_token_across_hosts: true,
            ..req(&im)
        };
        match lookup(Some(e.clone()), &shared, at(0)) {
            Lookup::Hit(r) => assert_eq!(r.auth.keys().collect::<Vec<_>>(), [ECR_B]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup(Some(e), &req(&im), at(0)),
            Lookup::Miss(Miss::KeysDoNotMatch)
        ));
        // Several keys (static credentials) are never re-keyed.
        let mut two = auth(ECR_A);
        two.extend(auth("quay.io"));
        assert_eq!(for_this_host(two.clone(), &im), two);
    }

    /// Row "damage": an entry whose keys do not match the image is a miss,
    /// and a fresh answer whose keys do not match is refused, not sent.
    #[test]
    fn damage_keys_that_do_not_match_are_never_answered() {
        let im = image("quay.io/org/app");
        let e = entry(ECR_A, at(0), 12 * H);
        assert!(matches!(
            lookup(Some(e), &req(&im), at(0)),
            Lookup::Miss(Miss::KeysDoNotMatch)
        ));
        match after_fetch(source_ok(ECR_A, at(0), H), None, &key(), &req(&im), at(0)) {
            AfterFetch::Refuse { error, .. } => {
                assert_eq!(error.step, "building the response")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Clock moved back: an entry fetched more than 5 minutes in the future
    /// is a miss; within 5 minutes it is used.
    #[test]
    fn an_entry_from_the_future_is_a_miss() {
        let im = image(&format!("{ECR_A}/app"));
        let e = entry(ECR_A, at(600), 12 * H);
        assert!(matches!(
            lookup(Some(e), &req(&im), at(0)),
            Lookup::Miss(Miss::FromTheFuture)
        ));
        let e = entry(ECR_A, at(300), 12 * H);
        assert!(matches!(lookup(Some(e), &req(&im), at(0)), Lookup::Hit(_)));
    }
}
