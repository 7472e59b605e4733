//! Bad input never panics: the SPEC example and the shipped `gateway.yaml`, truncated at
//! every line, with lines dropped, and with bytes replaced, must each come back from
//! [`Config::parse`] as either a configuration or located errors.

use std::path::Path;

use certgate_config::Config;

const SOURCES: [&str; 2] = [
    include_str!("spec_example.yaml"),
    include_str!("../../../gateway.yaml"),
];

fn parse_must_not_panic(text: &str) {
    match Config::parse(text, Path::new("gateway.yaml")) {
        Ok(_) => {}
        Err(errors) => {
            let message = errors.to_string();
            assert!(
                !message.is_empty(),
                "an error must say something for:\n{text}"
            );
            assert!(
                message.contains("gateway.yaml"),
                "errors name the file: {message}"
            );
        }
    }
}

#[test]
fn truncated_configs_give_errors_not_panics() {
    for source in SOURCES {
        let mut end = 0;
        for line in source.split_inclusive('\n') {
            end += line.len();
            parse_must_not_panic(&source[..end]);
            // Cut in the middle of the line too (on a char boundary).
            let mid = (end - line.len()..end)
                .find(|i| *i > end - line.len() + line.len() / 2 && source.is_char_boundary(*i));
            if let Some(mid) = mid {
                parse_must_not_panic(&source[..mid]);
            }
        }
    }
}

#[test]
fn configs_missing_a_line_give_errors_not_panics() {
    for source in SOURCES {
        let lines: Vec<&str> = source.split_inclusive('\n').collect();
        for skip in 0..lines.len() {
            let text: String = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            parse_must_not_panic(&text);
        }
    }
}

#[test]
fn configs_with_replaced_bytes_give_errors_not_panics() {
    // Characters that change YAML structure or value types.
    const REPLACEMENTS: [&str; 10] = [":", "-", "[", "{", "\"", "'", " ", "\t", "0", "é"];
    for source in SOURCES {
        // A deterministic walk over positions: every 7th char boundary, each replacement.
        let positions: Vec<usize> = source.char_indices().map(|(i, _)| i).step_by(7).collect();
        for (n, &at) in positions.iter().enumerate() {
            let replacement = REPLACEMENTS[n % REPLACEMENTS.len()];
            let next = source[at..]
                .chars()
                .next()
                .map_or(at, |c| at + c.len_utf8());
            let text = format!("{}{}{}", &source[..at], replacement, &source[next..]);
            parse_must_not_panic(&text);
        }
    }
}
