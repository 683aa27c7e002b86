//! Who calls the control API, and what they may do (`[[http.token]]`, docs/config.md).
//!
//! A token is a bearer token read at start from its own file (not readable or writable by
//! group or others), with a name (who acts, on the record and in logs), a role and
//! optionally the channels it may act on. `http.api_token` is an admin token without a name
//! of its own (`http.api_token`), and `[alerts] token` the emergency role's. Once any
//! `[[http.token]]` is configured, reading the API needs a token too. A failed
//! authentication is logged (once a minute per source address) and counted; a source with
//! more than [`MAX_FAILURES`] in a minute is answered 429 without its token being looked at
//! until the minute is over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Role, Secret, TokenConfig};

/// Failed authentications a source address may have in [`FAILURE_WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 10;
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A named token, read from its file (`Debug` shows no secret: [`Secret`]'s is redacted).
#[derive(Debug)]
pub(crate) struct ApiToken {
    name: String,
    role: Role,
    channels: Option<Vec<String>>,
    secret: Secret,
}

/// What a request asks to do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need<'a> {
    /// Read the API.
    Read,
    /// Write channel `.0`'s schedules.
    Schedule(&'a str),
    /// Give channel `.0`'s inputs an order.
    Operate(&'a str),
    /// Send an alert, upload an alert clip.
    Emergency,
    /// Drain a fleet node (moves every channel it sends).
    Fleet,
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The token's name (`http.api_token`, `alerts.token` for the unnamed ones).
    pub(crate) name: String,
    pub(crate) role: Role,
    channels: Option<Vec<String>>,
    /// The unnamed admin token (`http.api_token`): its actor is the `X-Operator` it gives.
    pub(crate) legacy: bool,
}

impl Caller {
    /// Whether it may do `need`.
    pub(crate) fn may(&self, need: Need<'_>) -> bool {
        let on = |c: &str| {
            self.channels
                .as_ref()
                .is_none_or(|l| l.iter().any(|x| x == c))
        };
        match (need, self.role) {
            (Need::Emergency, role) => role == Role::Emergency,
            (Need::Read, _) | (_, Role::Admin) => true,
            (Need::Schedule(c), Role::Scheduler) | (Need::Operate(c), Role::Operator) => on(c),
            // An operator of every channel.
            (Need::Fleet, Role::Operator) => self.channels.is_none(),
            _ => false,
        }
    }
}

/// Why a request is not let through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No token matched (401).
    Unauthenticated,
    /// A token matched, but its role (or channels) does not allow it (403).
    Forbidden { caller: String, role: Role },
    /// Too many failures from this address lately (429).
    TooManyFailures,
}

/// The control API's tokens and the failures by source address.
pub(crate) struct Auth {
    named: Vec<ApiToken>,
    legacy: Option<Secret>,
    emergency: Option<Secret>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    since: Instant,
    count: u32,
}

impl Auth {
    /// The tokens: `named` (read with [`load`]), the unnamed admin one (`http.api_token`)
    /// and the emergency one (`[alerts] token`).
    pub(crate) fn new(
        named: Vec<ApiToken>,
        legacy: Option<Secret>,
        emergency: Option<Secret>,
    ) -> Auth {
        Auth {
            named,
            legacy,
            emergency,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether reading the API needs a token (some `[[http.token]]` is configured).
    pub(crate) fn reads_need_a_token(&self) -> bool {
        !self.named.is_empty()
    }

    /// Whether any token could allow a change (else changes are refused as unconfigured).
    pub(crate) fn any(&self) -> bool {
        !self.named.is_empty() || self.legacy.is_some()
    }

    /// The caller whose bearer token is `given`, if any.
    fn identify(&self, given: &str) -> Option<Caller> {
        if let Some(t) = self.named.iter().find(|t| t.secret.matches(given)) {
            return Some(Caller {
                name: t.name.clone(),
                role: t.role,
                channels: t.channels.clone(),
                legacy: false,
            });
        }
        if self.legacy.as_ref().is_some_and(|s| s.matches(given)) {
            return Some(Caller {
                name: "http.api_token".to_owned(),
                role: Role::Admin,
                channels: None,
                legacy: true,
            });
        }
        self.emergency
            .as_ref()
            .is_some_and(|s| s.matches(given))
            .then(|| Caller {
                name: "alerts.token".to_owned(),
                role: Role::Emergency,
                channels: None,
                legacy: false,
            })
    }

    /// The name of the token `given`, if it is one (for the audit trail; no failure counted).
    pub(crate) fn name_of(&self, given: &str) -> Option<String> {
        self.identify(given).map(|c| c.name)
    }

    /// Lets `given` (the bearer token, `""` when none) from `from` do `need`, or says why
    /// not; failures are counted and logged by source.
    pub(crate) fn check(
        &self,
        given: &str,
        from: Option<IpAddr>,
        need: Need<'_>,
    ) -> Result<Caller, Denied> {
        if self.limited(from) {
            return Err(Denied::TooManyFailures);
        }
        match self.identify(given) {
            Some(c) if c.may(need) => Ok(c),
            Some(c) => {
                tracing::warn!(caller = %c.name, role = c.role.name(), ?need, "API call refused: not allowed for the role");
                Err(Denied::Forbidden {
                    caller: c.name,
                    role: c.role,
                })
            }
            None => {
                self.failed(from, given.is_empty());
                Err(Denied::Unauthenticated)
            }
        }
    }

    fn limited(&self, from: Option<IpAddr>) -> bool {
        let Some(ip) = from else { return false };
        let map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&ip)
            .is_some_and(|f| f.since.elapsed() < FAILURE_WINDOW && f.count > MAX_FAILURES)
    }

    fn failed(&self, from: Option<IpAddr>, no_token: bool) {
        let what = if no_token {
            "no token"
        } else {
            "a wrong token"
        };
        let Some(ip) = from else {
            tracing::warn!("API call refused: {what}");
            return;
        };
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, f| f.since.elapsed() < FAILURE_WINDOW);
        }
        let f = map.entry(ip).or_insert(Failures {
            since: Instant::now(),
            count: 0,
        });
        if f.since.elapsed() >= FAILURE_WINDOW {
            *f = Failures {
                since: Instant::now(),
                count: 0,
            };
        }
        f.count += 1;
        if f.count == 1 {
            tracing::warn!(from = %ip, "API call refused: {what} (further failures from this address are counted, logged once a minute)");
        } else if f.count == MAX_FAILURES + 1 {
            tracing::warn!(from = %ip, failures = f.count, "API calls from this address refused with 429 for the rest of the minute: too many failed authentications");
        }
    }
}

/// Reads the tokens of `[[http.token]]` from their files: each must exist, be readable by
/// its owner alone (no group or other permission bits) and hold 16..=256 visible ASCII
/// characters (a final newline is ignored); no two tokens may be the same.
pub(crate) fn load(cfg: &[TokenConfig]) -> Result<Vec<ApiToken>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out: Vec<ApiToken> = Vec::new();
    for t in cfg {
        let shown = t.file.display();
        let meta =
            std::fs::metadata(&t.file).map_err(|e| format!("token `{}`: {shown}: {e}", t.name))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "token `{}`: {shown} has mode {mode:04o}: group or others may read it; chmod 600 {shown}",
                t.name
            ));
        }
        let text = std::fs::read_to_string(&t.file)
            .map_err(|e| format!("token `{}`: {shown}: {e}", t.name))?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if !(16..=256).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "token `{}`: {shown} must hold 16..=256 visible ASCII characters (it holds {} bytes)",
                t.name,
                secret.len()
            ));
        }
        if let Some(twin) = out.iter().find(|o| o.secret.matches(secret)) {
            return Err(format!(
                "token `{}` is the same as token `{}`",
                t.name, twin.name
            ));
        }
        out.push(ApiToken {
            name: t.name.clone(),
            role: t.role,
            channels: t.channels.clone(),
            secret: Secret::new(secret.to_owned()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, channels: Option<&[&str]>) -> Caller {
        Caller {
            name: "t".to_owned(),
            role,
            channels: channels.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            legacy: false,
        }
    }

    /// Each role against each need: reading for all; schedules for schedulers (on their
    /// channels) and admins; input orders for operators (on theirs) and admins; alerts for
    /// the emergency role alone.
    #[test]
    fn what_each_role_may_do() {
        use Need::*;
        let needs = [
            Read,
            Schedule("news"),
            Schedule("intl"),
            Operate("news"),
            Operate("intl"),
            Emergency,
        ];
        let table = [
            (
                caller(Role::Viewer, None),
                [true, false, false, false, false, false],
            ),
            (
                caller(Role::Scheduler, Some(&["news"])),
                [true, true, false, false, false, false],
            ),
            (
                caller(Role::Scheduler, None),
                [true, true, true, false, false, false],
            ),
            (
                caller(Role::Operator, Some(&["news"])),
                [true, false, false, true, false, false],
            ),
            (
                caller(Role::Emergency, None),
                [true, false, false, false, false, true],
            ),
            (
                caller(Role::Admin, None),
                [true, true, true, true, true, false],
            ),
        ];
        for (c, want) in table {
            let got: Vec<bool> = needs.iter().map(|n| c.may(*n)).collect();
            assert_eq!(got, want, "{:?} {:?}", c.role, c.channels);
        }
    }

    /// Token files: read with the final newline dropped; refused when others may read them,
    /// when too short, and when two are the same.
    #[test]
    fn token_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            TokenConfig {
                name: name.to_owned(),
                file: p,
                role: Role::Viewer,
                channels: None,
            }
        };
        let good = file("good", "0123456789abcdef0123\n", 0o600);
        let tokens = load(std::slice::from_ref(&good)).unwrap();
        assert!(tokens[0].secret.matches("0123456789abcdef0123"));
        let open = file("open", "0123456789abcdef0124\n", 0o640);
        assert!(load(&[open]).unwrap_err().contains("mode 0640"));
        let short = file("short", "abc\n", 0o400);
        assert!(load(&[short]).unwrap_err().contains("16..=256"));
        let twin = file("twin", "0123456789abcdef0123", 0o600);
        assert!(load(&[good, twin])
            .unwrap_err()
            .contains("the same as token `good`"));
        // Failures by address: 429 once past the limit, other addresses unaffected.
        let auth = Auth::new(
            Vec::new(),
            Some(Secret::new("admin-token-0123456789".into())),
            None,
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..=MAX_FAILURES {
            assert_eq!(
                auth.check("nope", Some(ip), Need::Read),
                Err(Denied::Unauthenticated)
            );
        }
        assert_eq!(
            auth.check("admin-token-0123456789", Some(ip), Need::Read),
            Err(Denied::TooManyFailures)
        );
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(auth
            .check("admin-token-0123456789", Some(other), Need::Schedule("x"))
            .is_ok());
    }
}
