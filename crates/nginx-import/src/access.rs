//! nginx's access checks and what they become in gateway.yaml.
//!
//! nginx mTLS configurations refuse callers with `if (…) { return 403; }` on the
//! `$ssl_client_*` variables (often through a `map`), and with the access-phase modules
//! (`allow`/`deny`, `auth_basic`, `auth_request`, `limit_except`). Leaving one out would
//! make the converted route *more open* than nginx's location, so each check is either
//! carried over exactly — as `require_client_cert`, `allow` and `deny` rules — or the
//! route refuses every request (`deny_all: true`) and the check is listed. A check
//! certgate can express only with another status code (403 for nginx's 400, or the
//! reverse) is carried over with a comment that says so: who gets in is the same.
//!
//! The mapping relies on three facts about the request path (crates/proxy/src/decide.rs):
//! `require_client_cert` refuses (400) a request without a certificate; `allow` and
//! `deny` rules admit only a verified certificate (403 otherwise); under `verify: on` and
//! `optional` a certificate that fails verification never reaches a route (400), as in
//! nginx. Only under `optional_no_ca` does a route see unverified certificates.

use std::collections::BTreeMap;

use crate::parse::Directive;

/// A certificate rule, as certgate's `allow`/`deny` items write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    SubjectRegex(String),
    IssuerRegex(String),
    Subject(String),
    Issuer(String),
    FingerprintSha1(String),
    Serial(String),
}

impl Rule {
    /// The gateway.yaml key and its value.
    pub(crate) fn key_value(&self) -> (&'static str, &str) {
        match self {
            Rule::SubjectRegex(v) => ("subject_regex", v),
            Rule::IssuerRegex(v) => ("issuer_regex", v),
            Rule::Subject(v) => ("subject", v),
            Rule::Issuer(v) => ("issuer", v),
            Rule::FingerprintSha1(v) => ("fingerprint_sha1", v),
            Rule::Serial(v) => ("serial", v),
        }
    }

    /// Whether nginx's check would match the variable's value without a certificate
    /// (every `$ssl_client_*` but `$ssl_client_verify` is then empty).
    fn matches_empty(&self) -> bool {
        match self {
            Rule::SubjectRegex(p) | Rule::IssuerRegex(p) => {
                // Unparsable patterns never get here; be closed if one does.
                regex::Regex::new(p).map_or(true, |r| r.is_match(""))
            }
            Rule::Subject(v) | Rule::Issuer(v) | Rule::FingerprintSha1(v) | Rule::Serial(v) => {
                v.is_empty()
            }
        }
    }
}

/// What one nginx directive does to access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Refuses unless `$ssl_client_verify` is `SUCCESS`.
    NeedVerified(u16),
    /// Refuses when no certificate was sent (`$ssl_client_verify = NONE`).
    NeedCert(u16),
    /// Refuses unless one of the rules matches.
    Allow(Vec<Rule>, u16),
    /// Refuses when one of the rules matches.
    Deny(Vec<Rule>, u16),
    /// Refuses every request with this status (`return 403;`, `deny all;`).
    Closed(u16),
    /// An access check certgate cannot carry over exactly: the route fails closed.
    Unconvertible(String),
}

/// One access check and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Check<'a> {
    pub directive: &'a Directive,
    pub effect: Effect,
    /// The map it reads, if any (so the `map` is not listed as left out).
    pub map: Option<&'a Directive>,
}

/// What a directive is, for the caller that lists what is not carried over.
pub(crate) enum Found<'a> {
    Check(Check<'a>),
    /// Not an access check (a conditional rewrite, a fixed 2xx/3xx answer): listed as
    /// unsupported with this reason, as before.
    NotAccess(&'static str),
}

/// The `map` blocks of the http level, by the variable they define (without `$`).
#[derive(Default)]
pub(crate) struct Maps<'a> {
    by_var: BTreeMap<String, &'a Directive>,
}

impl<'a> Maps<'a> {
    pub(crate) fn add(&mut self, d: &'a Directive) {
        if let [_, var] = d.args.as_slice() {
            if let Some(name) = var.strip_prefix('$') {
                // nginx refuses a second map of the same variable; keep the first.
                self.by_var.entry(name.to_string()).or_insert(d);
            }
        }
    }
}

/// The `$ssl_client_*` variables a check can be converted on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Var {
    SubjectDn,
    IssuerDn,
    Fingerprint,
    Serial,
}

impl Var {
    fn of(name: &str) -> Option<Var> {
        match name {
            "ssl_client_s_dn" => Some(Var::SubjectDn),
            "ssl_client_i_dn" => Some(Var::IssuerDn),
            "ssl_client_fingerprint" => Some(Var::Fingerprint),
            "ssl_client_serial" => Some(Var::Serial),
            _ => None,
        }
    }

    /// An exact, case-sensitive comparison with `value` (nginx's `=`).
    fn equal(self, value: &str) -> Result<Rule, String> {
        if value.is_empty() {
            return Err("a comparison with an empty value tests for a missing certificate, not a certificate field".into());
        }
        match self {
            Var::SubjectDn => Ok(Rule::Subject(value.to_string())),
            Var::IssuerDn => Ok(Rule::Issuer(value.to_string())),
            Var::Fingerprint => {
                if value.len() == 40
                    && value
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    Ok(Rule::FingerprintSha1(value.to_string()))
                } else {
                    Err(format!("{value:?} is not how $ssl_client_fingerprint prints (40 lower-case hex digits, no colons), so nginx's comparison never matches"))
                }
            }
            Var::Serial => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                if !digits.is_empty()
                    && digits.len() % 2 == 0
                    && digits
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
                {
                    Ok(Rule::Serial(value.to_string()))
                } else {
                    Err(format!("{value:?} is not how $ssl_client_serial prints (upper-case hex digits in pairs), so nginx's comparison never matches"))
                }
            }
        }
    }

    /// A PCRE search (nginx's `~`, `~*`).
    fn regex(self, pattern: &str, caseless: bool) -> Result<Rule, String> {
        let converted = pcre_to_rust(pattern, caseless)?;
        match self {
            Var::SubjectDn => Ok(Rule::SubjectRegex(converted)),
            Var::IssuerDn => Ok(Rule::IssuerRegex(converted)),
            Var::Fingerprint | Var::Serial => Err(
                "regular expressions on $ssl_client_fingerprint and $ssl_client_serial have no certgate rule; compare with = or !="
                    .into(),
            ),
        }
    }

    /// A `map` key that is a plain string: nginx compares those ignoring ASCII case.
    fn map_exact(self, key: &str) -> Result<Rule, String> {
        if key.is_empty() || !key.is_ascii() {
            return Err(format!(
                "map key {key:?}: only non-empty ASCII keys are converted"
            ));
        }
        match self {
            Var::SubjectDn => Ok(Rule::SubjectRegex(format!("(?i)^{}$", regex::escape(key)))),
            Var::IssuerDn => Ok(Rule::IssuerRegex(format!("(?i)^{}$", regex::escape(key)))),
            Var::Fingerprint => self.equal(&key.to_ascii_lowercase()),
            Var::Serial => self.equal(&key.to_ascii_uppercase()),
        }
    }
}

/// The condition of an `if`, split as `ngx_http_rewrite_if_condition` does: the first
/// argument starts with `(` and the last ends with `)`, each possibly alone.
fn condition(args: &[String]) -> Option<Vec<String>> {
    let mut words: Vec<String> = args.to_vec();
    let first = words.first_mut()?;
    let rest = first.strip_prefix('(')?.to_string();
    if rest.is_empty() {
        words.remove(0);
    } else {
        *words.first_mut()? = rest;
    }
    let last = words.last_mut()?;
    let rest = last.strip_suffix(')')?.to_string();
    if rest.is_empty() {
        words.pop();
    } else {
        *words.last_mut()? = rest;
    }
    Some(words)
}

/// The status of `return CODE;` when the body is exactly that, else `None`.
fn sole_return(body: &[Directive]) -> Option<u16> {
    match body {
        [r] if r.name == "return" && r.block.is_none() && r.args.len() == 1 => {
            r.args[0].parse().ok()
        }
        _ => None,
    }
}

/// Whether a body can answer a request instead of passing it on: a `return` with an
/// error status (or any `return`/redirect when `any_return`), or an access-phase module.
fn refuses(body: &[Directive], any_return: bool) -> bool {
    body.iter().any(|d| match d.name.as_str() {
        "return" => {
            any_return
                || match d.args.first().map(|a| a.parse::<u16>()) {
                    Some(Ok(code)) => code >= 400,
                    // `return URL` is a redirect; a variable status is unknown: closed.
                    Some(Err(_)) => d.args.len() > 1 || !is_url(&d.args[0]),
                    None => true,
                }
        }
        "rewrite" => {
            any_return
                && d.args
                    .get(2)
                    .is_some_and(|f| f == "redirect" || f == "permanent")
        }
        "allow" | "deny" | "auth_basic" | "auth_request" | "limit_except" => true,
        _ => false,
    })
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://") || text.starts_with("$scheme")
}

/// `$ssl_client_verify !~ …` patterns that mean exactly "is not SUCCESS".
const VERIFY_SUCCESS_PATTERNS: &[&str] = &["SUCCESS", "^SUCCESS", "SUCCESS$", "^SUCCESS$"];

/// Classifies a server- or location-level `if`.
pub(crate) fn classify_if<'a>(d: &'a Directive, maps: &Maps<'a>) -> Found<'a> {
    let body: &[Directive] = d.block.as_deref().unwrap_or(&[]);
    let words = condition(&d.args);
    let on_client_var = d.args.iter().any(|a| a.contains("$ssl_client_"))
        || words.as_ref().is_some_and(|w| {
            w.first()
                .and_then(|v| v.strip_prefix('$'))
                .is_some_and(|v| maps.by_var.contains_key(v))
        });
    if !refuses(body, on_client_var) {
        return Found::NotAccess(
            "conditional configuration is not supported (an if that only sets, rewrites or answers 2xx/3xx)",
        );
    }
    let check = |effect| {
        Found::Check(Check {
            directive: d,
            effect,
            map: None,
        })
    };
    let closed = |why: String| check(Effect::Unconvertible(why));
    let status = match sole_return(body) {
        Some(code @ (400 | 403)) => code,
        Some(code) => {
            return closed(format!(
                "return {code}: only checks that return 403 or 400 are converted"
            ))
        }
        None => {
            return closed(
                "only an if whose body is exactly `return 403;` or `return 400;` is converted"
                    .into(),
            )
        }
    };
    let Some(words) = words else {
        return closed("unreadable condition".into());
    };
    let (var, op, value) = match words.as_slice() {
        [var, op, value] => (var.as_str(), op.as_str(), value.as_str()),
        [var] => (var.as_str(), "", ""),
        _ => return closed("only `$variable op value` conditions are converted".into()),
    };
    let Some(name) = var.strip_prefix('$') else {
        return closed("only conditions on a variable are converted".into());
    };
    let negated = op.starts_with('!');
    let is_regex = op.contains('~');
    // nginx does not expand variables in regular expressions (a `$` is an anchor there),
    // but does in the value of `=` and `!=`.
    if !is_regex && value.contains('$') {
        return closed("comparisons with variables are not converted".into());
    }

    if name == "ssl_client_verify" {
        let effect = match (op, value) {
            ("!=", "SUCCESS") => Effect::NeedVerified(status),
            ("!~", v) if VERIFY_SUCCESS_PATTERNS.contains(&v) => Effect::NeedVerified(status),
            ("=", "NONE") => Effect::NeedCert(status),
            _ => {
                return closed(format!(
                    "$ssl_client_verify {op} {value}: only != SUCCESS and = NONE are converted"
                ))
            }
        };
        return check(effect);
    }
    if let Some(v) = Var::of(name) {
        let rule = match op {
            "=" | "!=" => v.equal(value),
            "~" | "!~" => v.regex(value, false),
            "~*" | "!~*" => v.regex(value, true),
            "" => Err(format!(
                "if (${name}) tests for a certificate, not a field; use $ssl_client_verify"
            )),
            other => Err(format!("operator {other} is not converted")),
        };
        return match rule {
            Ok(rule) if negated => check(Effect::Allow(vec![rule], status)),
            Ok(rule) => check(Effect::Deny(vec![rule], status)),
            Err(why) => closed(why),
        };
    }
    if let Some(map) = maps.by_var.get(name).copied() {
        let refused: Box<dyn Fn(&str) -> bool> = match op {
            "=" => Box::new(move |x: &str| x == value),
            "!=" => Box::new(move |x: &str| x != value),
            "" => Box::new(|x: &str| !x.is_empty() && x != "0"),
            _ => {
                return closed(format!(
                    "${name} {op} …: only =, != and a plain test of a map's variable are converted"
                ))
            }
        };
        let mut found = match map_rules(map, &*refused) {
            Ok((rules, true)) => check(Effect::Allow(rules, status)),
            Ok((rules, false)) => check(Effect::Deny(rules, status)),
            Err(why) => closed(format!("map at {}: {why}", map.at())),
        };
        if let Found::Check(c) = &mut found {
            c.map = Some(map);
        }
        return found;
    }
    if name.starts_with("ssl_client_") {
        return closed(format!(
            "${name}: only $ssl_client_verify, $ssl_client_s_dn, $ssl_client_i_dn, $ssl_client_fingerprint and $ssl_client_serial checks are converted"
        ));
    }
    closed(format!(
        "a check on ${name} (not a client-certificate variable) has no certgate equivalent"
    ))
}

/// A `map` of a certificate variable that is a plain allow-list (the default value is
/// refused, every entry's is not) or deny-list (the reverse): its keys as rules, and
/// whether they allow. Order does not matter then: every entry has the same outcome.
fn map_rules(map: &Directive, refused: &dyn Fn(&str) -> bool) -> Result<(Vec<Rule>, bool), String> {
    let source = map.args.first().map(String::as_str).unwrap_or("");
    let var = source
        .strip_prefix('$')
        .and_then(Var::of)
        .ok_or_else(|| format!("the map's source {source} is not $ssl_client_s_dn, $ssl_client_i_dn, $ssl_client_fingerprint or $ssl_client_serial"))?;
    let mut default = String::new();
    let mut entries: Vec<(Rule, bool)> = Vec::new();
    for e in map.block.as_deref().unwrap_or(&[]) {
        if e.block.is_some() {
            return Err("a block inside map".into());
        }
        let value = match e.args.as_slice() {
            [v] => v,
            [] if matches!(e.name.as_str(), "hostnames" | "volatile") => {
                return Err(format!("map parameter {} is not converted", e.name))
            }
            _ => return Err(format!("map entry {:?} is not `key value;`", e.name)),
        };
        if value.contains('$') {
            return Err("map values with variables are not converted".into());
        }
        if e.name == "default" {
            default = value.clone();
            continue;
        }
        if e.name == "include" {
            return Err("include inside map is not converted".into());
        }
        let rule = if let Some(p) = e.name.strip_prefix("~*") {
            var.regex(p, true)?
        } else if let Some(p) = e.name.strip_prefix('~') {
            var.regex(p, false)?
        } else {
            var.map_exact(e.name.strip_prefix('\\').unwrap_or(&e.name))?
        };
        entries.push((rule, refused(value)));
    }
    if entries.is_empty() {
        return Err("the map has no entries".into());
    }
    let default_refused = refused(&default);
    if entries.iter().any(|(_, r)| *r == default_refused) {
        return Err(
            "some entries give the same answer as the default: not a plain allow- or deny-list"
                .into(),
        );
    }
    Ok((
        entries.into_iter().map(|(r, _)| r).collect(),
        default_refused,
    ))
}

/// An unconditional `return` at server or location level (rewrite phase: before
/// anything is proxied). `None` when it is not an access check (2xx/3xx).
pub(crate) fn classify_return(d: &Directive) -> Option<Effect> {
    if !refuses(std::slice::from_ref(d), false) {
        return None;
    }
    Some(
        match (d.args.as_slice(), d.args.first().map(|a| a.parse::<u16>())) {
            ([_], Some(Ok(403))) => Effect::Closed(403),
            (_, Some(Ok(code))) => Effect::Unconvertible(format!(
                "return {code}: every request is refused, certgate answers 403"
            )),
            _ => Effect::Unconvertible("a return with a variable status".into()),
        },
    )
}

/// The access-phase modules, read with nginx's inheritance (`chain` outermost first):
/// `allow`/`deny` from the innermost level that has any, `auth_basic`/`auth_request`
/// from the innermost that sets them, `limit_except` blocks of the location.
pub(crate) fn access_phase<'a>(chain: &[&'a [Directive]]) -> Vec<Check<'a>> {
    let mut out = Vec::new();
    for level in chain.iter().rev() {
        let rules: Vec<&Directive> = level
            .iter()
            .filter(|d| d.name == "allow" || d.name == "deny")
            .collect();
        let Some(first) = rules.first() else { continue };
        let all = |d: &Directive| d.args.len() == 1 && d.args[0] == "all";
        let effect = if all(first) && first.name == "allow" {
            None
        } else if all(first) {
            Some(Effect::Closed(403))
        } else {
            Some(Effect::Unconvertible(
                "address allow/deny lists are not converted (certgate's allow rules match certificates)".into(),
            ))
        };
        if let Some(effect) = effect {
            out.push(Check {
                directive: first,
                effect,
                map: None,
            });
        }
        break;
    }
    for name in ["auth_basic", "auth_request"] {
        let found = chain
            .iter()
            .rev()
            .find_map(|level| level.iter().find(|d| d.name == name));
        if let Some(d) = found {
            if d.args.first().is_some_and(|a| a != "off") {
                out.push(Check {
                    directive: d,
                    effect: Effect::Unconvertible(
                        "HTTP authentication is not converted (certgate authenticates by client certificate)".into(),
                    ),
                    map: None,
                });
            }
        }
    }
    if let Some(location) = chain.last() {
        for d in location.iter().filter(|d| d.name == "limit_except") {
            out.push(Check {
                directive: d,
                effect: Effect::Unconvertible(
                    "limit_except (access by request method) is not converted".into(),
                ),
                map: None,
            });
        }
    }
    out
}

/// A route's access settings, computed from its checks in nginx's order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    pub require_client_cert: Option<String>,
    /// `verified: true` with its reason.
    pub verified: Option<String>,
    /// Rules and the `file:line` they come from.
    pub allow: Vec<(Rule, String)>,
    pub deny: Vec<(Rule, String)>,
    /// `(file:line, nginx text, why)` of each check the route refuses everything for.
    pub deny_all: Vec<(String, String, String)>,
    /// `deny_all` because nginx itself refuses every request here (exact).
    pub closed: Option<String>,
    /// Comments on what was carried over (and status codes that differ).
    pub notes: Vec<String>,
}

/// Combines a route's checks (server level first, then the location, as nginx runs
/// them) under the server's `ssl_verify_client` mode. Every check must hold (nginx
/// refuses at the first that fails); `allow` is any-of, so two different allow-lists
/// cannot be combined and fail closed.
pub(crate) fn combine(
    checks: &[Check<'_>],
    verify: &str,
    text: impl Fn(&Directive) -> String,
) -> Access {
    let mut access = Access::default();
    let mut need_verified: Option<(u16, String)> = None;
    let mut need_cert: Option<(u16, String)> = None;
    let mut allow: Option<(Vec<Rule>, u16, String)> = None;
    let mut deny: Vec<(Rule, String)> = Vec::new();
    let mut deny_status = Vec::new();
    let fail = |access: &mut Access, d: &Directive, why: String| {
        access.deny_all.push((d.at(), text(d), why));
    };
    for c in checks {
        let at = c.directive.at();
        if verify == "off" && !matches!(c.effect, Effect::Closed(_) | Effect::Unconvertible(_)) {
            fail(&mut access, c.directive, "ssl_verify_client is off: no certificate is requested, so nginx's check refuses every request".into());
            continue;
        }
        match &c.effect {
            Effect::Unconvertible(why) => fail(&mut access, c.directive, why.clone()),
            Effect::Closed(_) => {
                access.closed.get_or_insert(format!(
                    "{} ({at}): nginx refuses every request here",
                    text(c.directive)
                ));
            }
            Effect::NeedVerified(s) => {
                need_verified.get_or_insert((*s, at));
            }
            Effect::NeedCert(s) => {
                need_cert.get_or_insert((*s, at));
            }
            Effect::Allow(rules, s) => {
                if verify != "on" && rules.iter().any(Rule::matches_empty) {
                    fail(&mut access, c.directive, "the pattern also matches the empty value nginx sees without a certificate, so nginx lets requests without one through: not converted".into());
                    continue;
                }
                match &allow {
                    None => allow = Some((rules.clone(), *s, at)),
                    Some((existing, _, _)) if existing == rules => {}
                    Some(_) => fail(&mut access, c.directive, "a second allow-list on the same route: nginx requires both to match, certgate's allow rules are any-of".into()),
                }
            }
            Effect::Deny(rules, s) => {
                if verify != "on" && rules.iter().any(Rule::matches_empty) {
                    fail(&mut access, c.directive, "the pattern also matches the empty value nginx sees without a certificate: not converted".into());
                    continue;
                }
                deny.extend(rules.iter().map(|r| (r.clone(), at.clone())));
                deny_status.push(*s);
            }
        }
    }
    let verified_only = verify == "on" || need_verified.is_some();
    // Where a certificate is present, it is verified (`on`, `optional`), or a check
    // refuses unverified ones: only then do certgate's verified-only rules decide alike.
    let certs_verified = verify != "optional_no_ca" || need_verified.is_some();
    if let Some((rules, status, at)) = &allow {
        if !certs_verified {
            access.deny_all.push((at.clone(), "allow-list check".into(), "under ssl_verify_client optional_no_ca nginx also admits an unverified certificate that matches, certgate's allow rules match verified ones: add `if ($ssl_client_verify != SUCCESS) { return 403; }` in nginx first".into()));
        } else {
            access.allow = rules.iter().map(|r| (r.clone(), at.clone())).collect();
            if *status == 400 {
                access.notes.push(format!(
                    "{at}: nginx answers 400 where certgate's allow answers 403"
                ));
            }
        }
    }
    if !deny.is_empty() {
        // certgate's deny admits verified certificates only: exact when nginx's checks
        // already refuse the others.
        let closed_without_cert =
            verified_only || (verify == "optional" && need_cert.is_some()) || allow.is_some();
        if !certs_verified || !closed_without_cert {
            let at = deny[0].1.clone();
            access.deny_all.push((at, "deny-list check".into(), "nginx lets requests without a (verified) certificate past this check; certgate's deny rules admit verified certificates only: add `if ($ssl_client_verify != SUCCESS) { return 403; }` in nginx first".into()));
        } else {
            if deny_status.contains(&400) {
                access
                    .notes
                    .push("nginx answers 400 where certgate's deny answers 403".into());
            }
            access.deny = deny;
        }
    }
    if verify != "on" && verify != "off" {
        if let Some((status, at)) = &need_cert {
            access.require_client_cert = Some(format!("if ($ssl_client_verify = NONE) ({at})"));
            if *status == 403 {
                access.notes.push(format!(
                    "{at}: nginx answers 403 without a certificate, certgate 400"
                ));
            }
        }
        if let Some((status, at)) = &need_verified {
            let text = format!("if ($ssl_client_verify != SUCCESS) {{ return {status}; }} ({at})");
            match (status, verify) {
                // nginx already answers 400 for a certificate that fails under `optional`.
                (400, "optional") => access.require_client_cert = Some(text),
                (400, _) => {
                    access.require_client_cert = Some(text.clone());
                    if access.allow.is_empty() && access.deny.is_empty() {
                        access.verified = Some(text);
                    }
                    access.notes.push(format!(
                        "{at}: an unverified certificate gets 403 from certgate, 400 from nginx"
                    ));
                }
                _ => {
                    if access.allow.is_empty() && access.deny.is_empty() {
                        access.verified = Some(text);
                    }
                }
            }
        }
    } else if verify == "on" {
        for (what, at) in need_verified
            .iter()
            .map(|(_, a)| ("!= SUCCESS", a))
            .chain(need_cert.iter().map(|(_, a)| ("= NONE", a)))
        {
            access.notes.push(format!("{at}: if ($ssl_client_verify {what}) never refuses under ssl_verify_client on (certgate's verify: on does the same)"));
        }
    }
    access
}

/// nginx's PCRE pattern (unanchored search; `~*` caseless) as a `regex` crate pattern
/// that matches exactly the same `$ssl_client_s_dn`/`$ssl_client_i_dn` values, or why
/// not. Those values are printable ASCII (OpenSSL escapes every other byte), where the
/// two engines agree on classes, `.`, `\d\w\s\b` and case folding. What they read
/// differently is refused: `\<`/`\>` and `\b{…}` (word boundaries in `regex`, literals
/// in PCRE), `\v`/`\h`, nested classes and `&&`/`--`/`~~` inside classes (set operations
/// in `regex`), `{` that is not a counted repetition, possessive quantifiers, `(?x)`
/// (`regex` also ignores spaces inside classes), and anything `regex` cannot compile
/// (back-references, look-around, atomic groups, `\Q…\E`).
pub(crate) fn pcre_to_rust(pattern: &str, caseless: bool) -> Result<String, String> {
    let refuse = |what: &str| {
        Err(format!(
            "regular expression {pattern:?}: {what} (PCRE and certgate's regex engine would read it differently)"
        ))
    };
    if pattern.is_empty() {
        return refuse("empty");
    }
    if !pattern.is_ascii() {
        return refuse("non-ASCII characters");
    }
    let b = pattern.as_bytes();
    let mut i = 0;
    // Inside `[…]`: the index where the class's content starts (a `]` there is literal).
    let mut class: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'\\' {
            let Some(e) = next else {
                return refuse("a trailing backslash");
            };
            match e {
                b'd' | b'D' | b'w' | b'W' | b's' | b'S' | b't' | b'n' | b'r' | b'f' => {}
                b'b' | b'B' if class.is_none() && b.get(i + 2) == Some(&b'{') => {
                    return refuse("\\b{…}");
                }
                b'b' | b'B' | b'A' | b'z' if class.is_none() => {}
                b'x' => {
                    let rest = &pattern[i + 2..];
                    let ok =
                        rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit);
                    if !ok {
                        return refuse("\\x without two hex digits");
                    }
                    i += 4;
                    continue;
                }
                b'<' | b'>' => return refuse("\\< or \\>"),
                e if e.is_ascii_alphanumeric() => {
                    return refuse(&format!("the escape \\{}", char::from(e)))
                }
                _ => {}
            }
            i += 2;
            continue;
        }
        if let Some(start) = class {
            match c {
                b']' if i > start => class = None,
                b'[' => {
                    // Only a POSIX class such as [:alpha:] nests.
                    let rest = &pattern[i..];
                    match rest.strip_prefix("[:").and_then(|r| r.find(":]")) {
                        Some(end)
                            if rest[2..2 + end]
                                .bytes()
                                .all(|x| x.is_ascii_alphabetic() || x == b'^') =>
                        {
                            i += 2 + end + 2;
                            continue;
                        }
                        _ => return refuse("[ inside a character class"),
                    }
                }
                b'&' | b'-' | b'~' if next == Some(c) => {
                    return refuse("&&, -- or ~~ inside a character class")
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                let mut start = i + 1;
                if b.get(start) == Some(&b'^') {
                    start += 1;
                }
                class = Some(start);
                i = start;
                // A `]` right after `[` or `[^` is a literal in both engines.
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b'(' if next == Some(b'?') => {
                let rest = &pattern[i + 2..];
                let flags_len = rest
                    .bytes()
                    .take_while(|x| matches!(x, b'i' | b'm' | b's' | b'U' | b'-'))
                    .count();
                let after = rest.as_bytes().get(flags_len);
                let ok = rest.starts_with(':')
                    || rest.starts_with("P<")
                    || (rest.starts_with('<')
                        && rest.as_bytes().get(1).is_some_and(u8::is_ascii_alphabetic))
                    || (flags_len > 0 && matches!(after, Some(b':' | b')')));
                if !ok {
                    return refuse(
                        "a (?…) group other than (?:…), a named group or the flags i, m, s, U",
                    );
                }
            }
            b'{' => {
                let rest = &pattern[i + 1..];
                let Some(end) = rest.find('}') else {
                    return refuse("{ that is not a counted repetition");
                };
                let inner = &rest[..end];
                let (lo, hi) = inner.split_once(',').unwrap_or((inner, "0"));
                let digits = |s: &str| s.bytes().all(|x| x.is_ascii_digit());
                if lo.is_empty() || !digits(lo) || !digits(hi) {
                    return refuse("{ that is not a counted repetition {n}, {n,} or {n,m}");
                }
                i += 1 + end;
                if b.get(i + 1) == Some(&b'+') {
                    return refuse("a possessive quantifier");
                }
                i += 1;
                continue;
            }
            b'*' | b'+' | b'?' if next == Some(b'+') => return refuse("a possessive quantifier"),
            _ => {}
        }
        i += 1;
    }
    if class.is_some() {
        return refuse("an unclosed character class");
    }
    let converted = if caseless {
        format!("(?i){pattern}")
    } else {
        pattern.to_string()
    };
    if let Err(e) = regex::Regex::new(&converted) {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string();
        return refuse(&format!("not supported by certgate's engine: {first}"));
    }
    Ok(converted)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn pcre_patterns_that_mean_the_same_are_kept() {
        for (p, caseless, want) in [
            ("CN=admin", false, "CN=admin"),
            ("^CN=admin,", false, "^CN=admin,"),
            ("cn=(alice|bob)", true, "(?i)cn=(alice|bob)"),
            ("OU=[A-Za-z0-9_-]+", false, "OU=[A-Za-z0-9_-]+"),
            ("[]a]", false, "[]a]"),
            ("[^]a]x", false, "[^]a]x"),
            ("[[:alpha:]]{2,}", false, "[[:alpha:]]{2,}"),
            ("a{3}\\.b\\,c\\x41", false, "a{3}\\.b\\,c\\x41"),
            (
                "(?:x)(?i:y)(?<n>z)(?P<m>w)",
                false,
                "(?:x)(?i:y)(?<n>z)(?P<m>w)",
            ),
            ("\\bCN=\\w+\\s?\\z", false, "\\bCN=\\w+\\s?\\z"),
        ] {
            assert_eq!(pcre_to_rust(p, caseless).as_deref(), Ok(want), "{p}");
        }
    }

    #[test]
    fn pcre_patterns_read_differently_are_refused() {
        for p in [
            "\\<admin\\>",
            "\\b{start}x",
            "a{,3}",
            "{x}",
            "a++",
            "a{2}+",
            "(?x)a b",
            "[[b]]",
            "[a&&b]",
            "[a--b]",
            "\\v",
            "\\h",
            "(\\w)\\1",
            "(?=x)",
            "(?<!x)y",
            "(?>a)",
            "\\Qa.b\\E",
            "\\Z",
            "é",
            "",
            "[abc",
            "\\",
            "\\x4",
        ] {
            assert!(pcre_to_rust(p, false).is_err(), "{p:?} should be refused");
        }
    }

    #[test]
    fn conditions_are_split_as_nginx_does() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            condition(&s(&["($ssl_client_verify", "!=", "SUCCESS)"])),
            Some(s(&["$ssl_client_verify", "!=", "SUCCESS"]))
        );
        assert_eq!(
            condition(&s(&["(", "$a", "~", "x y", ")"])),
            Some(s(&["$a", "~", "x y"]))
        );
        assert_eq!(condition(&s(&["($a)"])), Some(s(&["$a"])));
        assert_eq!(condition(&s(&["$a", "=", "b)"])), None);
    }
}
