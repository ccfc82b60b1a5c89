//! Sign-in for the pages: a token is exchanged once for a session cookie
//! (HttpOnly, SameSite=Strict), so it never sits in an address, a bookmark
//! or a proxy's log; every form carries the session's CSRF token, checked
//! on every POST. Sessions live in memory (a restart signs everybody out),
//! end after 30 idle minutes or 8 hours, and their table is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::Digest as _;

/// The cookie's name.
pub const COOKIE: &str = "mf_session";
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, whatever its use.
pub const MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// At most this many sessions at once; the oldest goes first.
pub const MAX_SESSIONS: usize = 10_000;

/// A rows-checked upload waiting for the clerk's confirmation.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its id (in the confirm form).
    pub id: String,
    /// `ledger/path` of the kind.
    pub kind: (&'static str, &'static str),
    /// The file's name as uploaded.
    pub file: String,
    /// The raw file: checked again, against the ledger as it is then, when
    /// the clerk confirms.
    pub bytes: Vec<u8>,
}

/// One signed-in browser (`R`: who signed in, the server's role type).
#[derive(Debug, Clone)]
pub struct Session<R> {
    /// Who signed in.
    pub role: R,
    /// The token every form of this session carries.
    pub csrf: String,
    created: Instant,
    seen: Instant,
    /// An upload waiting for confirmation.
    pub pending: Option<Pending>,
}

/// The sessions, keyed by the SHA-256 of the cookie's value (the table
/// holds nothing a memory dump could replay).
#[derive(Debug)]
pub struct Sessions<R> {
    map: HashMap<String, Session<R>>,
}

impl<R> Default for Sessions<R> {
    fn default() -> Self {
        Sessions {
            map: HashMap::new(),
        }
    }
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> Option<String> {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn key(sid: &str) -> String {
    sha2::Sha256::digest(sid.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn alive<R>(s: &Session<R>, now: Instant) -> bool {
    now.duration_since(s.created) < MAX_AGE && now.duration_since(s.seen) < IDLE
}

impl<R> Sessions<R> {
    /// A new session for `role`: the cookie's value.
    pub fn start(&mut self, role: R, now: Instant) -> Option<String> {
        let sid = random_token()?;
        let csrf = random_token()?;
        self.map.retain(|_, s| alive(s, now));
        if self.map.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(
            key(&sid),
            Session {
                role,
                csrf,
                created: now,
                seen: now,
                pending: None,
            },
        );
        Some(sid)
    }

    /// The live session of cookie value `sid` (its idle clock restarted).
    pub fn touch(&mut self, sid: &str, now: Instant) -> Option<&mut Session<R>> {
        let k = key(sid);
        if self.map.get(&k).is_some_and(|s| !alive(s, now)) {
            self.map.remove(&k);
            return None;
        }
        let s = self.map.get_mut(&k)?;
        s.seen = now;
        Some(s)
    }

    /// Sign out.
    pub fn end(&mut self, sid: &str) {
        self.map.remove(&key(sid));
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The session cookie's value in a request.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The `Set-Cookie` value that starts a session (`Secure` when the request
/// came over HTTPS through a proxy that says so).
pub fn set_cookie(sid: &str, headers: &HeaderMap) -> String {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!(
        "{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        MAX_AGE.as_secs(),
        if https { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether a form's CSRF token is the session's (constant time).
pub fn csrf_ok<R>(session: &Session<R>, given: Option<&String>) -> bool {
    use subtle::ConstantTimeEq as _;
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(session.csrf.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_at_their_age() {
        let mut s = Sessions::<&str>::default();
        let t0 = Instant::now();
        let sid = s.start("manager", t0).expect("random");
        assert!(s.touch(&sid, t0 + Duration::from_secs(60)).is_some());
        // 29 minutes after the last request: still there; 31 minutes: gone.
        let t1 = t0 + Duration::from_secs(60);
        assert!(s.touch(&sid, t1 + Duration::from_secs(29 * 60)).is_some());
        let t2 = t1 + Duration::from_secs(29 * 60);
        assert!(s.touch(&sid, t2 + Duration::from_secs(31 * 60)).is_none());
        // Used every 10 minutes, a session still ends 8 h after sign-in.
        let sid = s.start("manager", t0).expect("random");
        let mut t = t0;
        let mut alive_until = t0;
        while t < t0 + Duration::from_secs(9 * 3600) {
            t += Duration::from_secs(600);
            if s.touch(&sid, t).is_some() {
                alive_until = t;
            }
        }
        assert!(alive_until < t0 + MAX_AGE && alive_until >= t0 + MAX_AGE - IDLE);
        assert!(s.touch("not-a-session", t0).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut s = Sessions::<&str>::default();
        let t0 = Instant::now();
        let first = s.start("manager", t0).expect("random");
        for i in 0..MAX_SESSIONS {
            s.start("manager", t0 + Duration::from_millis(1 + i as u64))
                .expect("random");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            s.touch(&first, t0 + Duration::from_secs(1)).is_none(),
            "the oldest made room"
        );
    }

    #[test]
    fn cookie_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mf_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&h), Some("abc"));
        let mut s = Sessions::<&str>::default();
        let sid = s.start("manager", Instant::now()).expect("random");
        let sess = s.touch(&sid, Instant::now()).expect("live").clone();
        assert!(csrf_ok(&sess, Some(&sess.csrf)));
        assert!(!csrf_ok(&sess, Some(&"x".repeat(43))));
        assert!(!csrf_ok(&sess, None));
        assert!(set_cookie(&sid, &h).contains("HttpOnly; SameSite=Strict"));
    }
}
