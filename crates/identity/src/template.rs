//! `proxy_set_header`-style value templates: literal text with `$name` and
//! `${name}` variables, parsed once at configuration time with nginx's rules and
//! rendered against an [`Identity`].

use crate::vars::{Identity, Variable};
use crate::IdentityError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Var(Variable),
}

/// A parsed header-value template.
///
/// Syntax as in nginx: `$` followed by letters, digits and `_` names a variable;
/// `${name}` delimits it from following text (`${ssl_client_s_dn_cn}_suffix`).
/// There is no escape for a literal `$`, as in nginx. Names are ASCII
/// case-insensitive. An unknown name is an error naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: Box<str>,
    parts: Vec<Part>,
    literal_len: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Template {
    /// Parses a template.
    pub fn parse(s: &str) -> Result<Template, IdentityError> {
        let bytes = s.as_bytes();
        let mut parts = Vec::new();
        let mut literal_start = 0;
        let mut literal_len = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            let dollar = i;
            if literal_start < dollar {
                parts.push(Part::Literal(s[literal_start..dollar].into()));
                literal_len += dollar - literal_start;
            }
            i += 1;
            let braced = bytes.get(i) == Some(&b'{');
            if braced {
                i += 1;
            }
            let name_start = i;
            while i < bytes.len() && is_name_byte(bytes[i]) {
                i += 1;
            }
            let name = &s[name_start..i];
            if braced {
                if bytes.get(i) != Some(&b'}') {
                    return Err(IdentityError::UnclosedVariable {
                        template: s.to_owned(),
                        position: dollar,
                    });
                }
                i += 1;
            }
            if name.is_empty() {
                return Err(IdentityError::InvalidVariableName {
                    template: s.to_owned(),
                    position: dollar,
                });
            }
            parts.push(Part::Var(name.parse()?));
            literal_start = i;
        }
        if literal_start < bytes.len() {
            parts.push(Part::Literal(s[literal_start..].into()));
            literal_len += bytes.len() - literal_start;
        }
        Ok(Template {
            source: s.into(),
            parts,
            literal_len,
        })
    }

    /// A template that is just one variable (what presets use).
    pub(crate) fn variable(v: Variable) -> Template {
        Template {
            source: format!("${}", v.name()).into(),
            parts: vec![Part::Var(v)],
            literal_len: 0,
        }
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the template uses, in order.
    pub fn variables(&self) -> impl Iterator<Item = Variable> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(*v),
            Part::Literal(_) => None,
        })
    }

    /// The template's value for one connection. Variables without a value
    /// contribute nothing, as in nginx.
    pub fn render(&self, id: &Identity, now_unix: i64) -> String {
        // A guess that covers most values (DNs, fingerprints) without regrowing.
        let vars = self.parts.len()
            - self
                .parts
                .iter()
                .filter(|p| matches!(p, Part::Literal(_)))
                .count();
        let mut out = String::with_capacity(self.literal_len + 64 * vars);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(v) => id.write_var(*v, now_unix, &mut out),
            }
        }
        out
    }
}

impl std::str::FromStr for Template {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Template, IdentityError> {
        Template::parse(s)
    }
}
