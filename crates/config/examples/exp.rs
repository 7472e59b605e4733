use serde::Deserialize;
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Tls { cert: String, #[serde(default)] depth: Option<u32>, #[serde(default)] list: Vec<String>, #[serde(default)] b: Option<bool>, #[serde(default)] m: Option<std::collections::BTreeMap<String,String>> }
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct S { tls: Tls }
fn main() {
    for src in ["tls: {cert: a, foo: 1}", "tls: {depth: 1}", "tls: {cert: a, depth: x}", "tls: {cert: a, depth: -1}", "tls: {cert: a, list: [1, [2]]}", "tls: {cert: a, list: x}", "tls: {cert: a, b: yes}", "tls: {cert: [a]}", "tls: {cert: }", "tls: {cert: a, depth: 1.5}", "tls: {cert: a, m: {a: [1]}}", "tls: {cert: a, m: 5}", "tls: 5", "a: 1\na: 2", "a: [1\n", "a: b\n c: d\n  - x", "x: *foo", "tls:\n  cert: a\n\tdepth: 1"] {
        match serde_yaml::from_str::<serde_yaml::Value>(src) {
            Err(e) => { println!("{src:?} SYNTAX {e} / {:?}", e.location().map(|l| (l.line(), l.column()))); continue; }
            Ok(v) => {
                let r: Result<S, _> = serde_path_to_error::deserialize(v);
                match r { Ok(s) => println!("{src:?} OK {s:?}"), Err(e) => println!("{src:?} -> path={} inner={}", e.path(), e.inner()) }
            }
        }
    }
    let mut p = yaml_rust2::parser::Parser::new_from_str("a:\n  b: c\n  d: [x, {y: z}]\n- q");
    struct R; impl yaml_rust2::parser::MarkedEventReceiver for R { fn on_event(&mut self, ev: yaml_rust2::Event, m: yaml_rust2::scanner::Marker) { println!("{ev:?} {}:{}", m.line(), m.col()); } }
    println!("{:?}", p.load(&mut R, false));
}
