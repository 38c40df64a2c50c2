//! docs/SPECIFICATION.md stays true to the repository: every test it cites exists, every
//! "SPECIFICATION §N" citation in the sources and docs names one of its sections, and no
//! citation of the old, out-of-repository contract is left. Pure file reading: no server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SPECIFICATION: &str = "docs/SPECIFICATION.md";

/// The old citation form, spelled in two pieces so this file does not match itself.
const OLD_CITATION: &str = concat!("SPEC", " §");

/// Where citations may live: checked for (b) and (c).
const SCANNED: [&str; 7] = [
    "crates",
    "docs",
    "examples",
    "scripts",
    "bench",
    "README.md",
    "CHANGELOG.md",
];

/// Text files worth reading; images, archives and lock files cannot hold a citation.
const TEXT_EXTENSIONS: [&str; 8] = ["rs", "md", "toml", "yaml", "yml", "sh", "py", "txt"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn specification() -> String {
    let path = repo().join(SPECIFICATION);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{SPECIFICATION} cannot be read ({e}): it is the contract"))
}

/// The section numbers of the document's headings: `## §3 Manifests` gives `3`,
/// `### §3.2 TaskAgent` gives `3.2`.
fn sections(spec: &str) -> BTreeSet<String> {
    spec.lines()
        .filter(|line| line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.trim_start_matches('#').trim_start();
            rest.strip_prefix('§').map(section_number)
        })
        .filter(|number| !number.is_empty())
        .collect()
}

/// The section number at the start of `text` (what follows a `§`): digits and inner dots,
/// without a trailing dot (`§4.` at the end of a sentence is `4`).
fn section_number(text: &str) -> String {
    let number: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.trim_end_matches('.').to_string()
}

/// The sections a citation names, starting right after "SPECIFICATION ": `§3`, or a list such
/// as `§3, §8` or `§3 Revisions, §11` or `§2 and §4`.
fn cited_sections(after: &str) -> Vec<String> {
    let mut cited = Vec::new();
    let mut rest = after;
    while let Some(tail) = rest.strip_prefix('§') {
        let number = section_number(tail);
        if number.is_empty() {
            break;
        }
        cited.push(number.clone());
        rest = &tail[number.len()..];
        // A list goes on with ", §N" or " and §N", possibly after a few words naming the
        // section (`§3 Revisions, §11`); anything else ends it.
        let next = rest
            .find('§')
            .filter(|&at| {
                let between = &rest[..at];
                between.len() <= 40
                    && (between.ends_with(", ") || between.ends_with(" and "))
                    && !between.contains(['.', ';', ')', '(', '`', '"'])
            })
            .map(|at| &rest[at..]);
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    cited
}

/// Every text file under the scanned places, skipping build output and hidden folders.
fn scanned_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = SCANNED.iter().map(|p| repo().join(p)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "target" || name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| TEXT_EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    let root = repo().canonicalize().unwrap();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// The test citations of the document: backquoted `crates/….rs::name`, with their line.
fn cited_tests(spec: &str) -> Vec<(usize, String, String)> {
    let mut cited = Vec::new();
    for (index, line) in spec.lines().enumerate() {
        for (i, quoted) in line.split('`').enumerate() {
            // Odd pieces are inside backquotes.
            if i % 2 == 0 {
                continue;
            }
            if let Some((file, name)) = quoted.split_once("::")
                && file.starts_with("crates/")
                && file.ends_with(".rs")
            {
                cited.push((index + 1, file.to_string(), name.to_string()));
            }
        }
    }
    cited
}

/// Whether `source` defines a function `name` (a test, a proptest property, a helper).
fn defines_fn(source: &str, name: &str) -> bool {
    let pattern = format!("fn {name}");
    source.match_indices(&pattern).any(|(at, _)| {
        let next = source[at + pattern.len()..].chars().next();
        matches!(next, Some('(' | '<'))
    })
}

fn fail(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_cited_test_exists() {
    let spec = specification();
    let cited = cited_tests(&spec);
    assert!(
        cited.len() > 100,
        "{SPECIFICATION} cites only {} tests: did the `crates/PATH.rs::name` form change?",
        cited.len()
    );
    let mut problems = Vec::new();
    for (line, file, name) in cited {
        let path = repo().join(&file);
        let Ok(source) = std::fs::read_to_string(&path) else {
            problems.push(format!(
                "{SPECIFICATION}:{line}: cites `{file}::{name}`, but {file} does not exist: \
                 cite the file that now holds the test"
            ));
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            problems.push(format!(
                "{SPECIFICATION}:{line}: `{file}::{name}` is not a function name: cite tests \
                 as `crates/PATH.rs::function`"
            ));
        } else if !defines_fn(&source, &name) {
            problems.push(format!(
                "{SPECIFICATION}:{line}: cites `{file}::{name}`, but {file} has no `fn {name}`: \
                 cite the test's current name, or move the promise to its section's \
                 Untested note"
            ));
        }
    }
    fail("tests cited by the specification", &problems);
}

#[test]
fn every_citation_names_a_section_of_the_specification() {
    let spec = specification();
    let sections = sections(&spec);
    assert!(
        sections.contains("1") && sections.contains("11"),
        "{SPECIFICATION} has no `## §N` headings (found {sections:?}): sections are numbered \
         `## §N Title` and `### §N.M Title`"
    );
    let mut known: Vec<&String> = sections.iter().collect();
    // In reading order: 3, 3.1, 3.2, …, 10, not 10 before 2.
    known.sort_by_key(|n| {
        n.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    let known = known
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut problems = Vec::new();
    let mut citations = 0;
    for path in scanned_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file = relative(&path);
        let is_spec = file == SPECIFICATION;
        for (index, line) in text.lines().enumerate() {
            let mut numbers = Vec::new();
            for (at, _) in line.match_indices("SPECIFICATION §") {
                numbers.extend(cited_sections(&line[at + "SPECIFICATION ".len()..]));
            }
            // The document's own cross-references (`§3.4`, `(§9)`) must hold too.
            if is_spec && !line.starts_with('#') {
                for (at, _) in line.match_indices('§') {
                    let number = section_number(&line[at + '§'.len_utf8()..]);
                    if !number.is_empty() {
                        numbers.push(number);
                    }
                }
            }
            for number in numbers {
                citations += 1;
                if !sections.contains(&number) {
                    problems.push(format!(
                        "{file}:{}: cites §{number}, which is not a section of {SPECIFICATION} \
                         (its sections: {known}): point it at the section that holds the \
                         promise, or add that section",
                        index + 1
                    ));
                }
            }
        }
    }
    assert!(
        citations > 0,
        "no \"SPECIFICATION §N\" citation found under {SCANNED:?}: is the scan looking in the \
         right place ({})?",
        repo().display()
    );
    fail("citations of the specification", &problems);
}

#[test]
fn no_citation_of_the_old_contract_remains() {
    let mut problems = Vec::new();
    for path in scanned_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (index, line) in text.lines().enumerate() {
            if line.contains(OLD_CITATION) {
                problems.push(format!(
                    "{}:{}: cites \"{OLD_CITATION}\", a document the repository does not hold: \
                     cite \"SPECIFICATION §N\" (docs/SPECIFICATION.md) instead",
                    relative(&path),
                    index + 1
                ));
            }
        }
    }
    fail("citations of the old contract", &problems);
}

#[test]
fn citation_lists_are_read_whole() {
    assert_eq!(cited_sections("§4"), ["4"]);
    assert_eq!(cited_sections("§4."), ["4"]);
    assert_eq!(cited_sections("§3.2)."), ["3.2"]);
    assert_eq!(cited_sections("§3, §8): cron"), ["3", "8"]);
    assert_eq!(cited_sections("§3 Revisions, §11)."), ["3", "11"]);
    assert_eq!(cited_sections("§2 and §4"), ["2", "4"]);
    assert_eq!(cited_sections("§9). See (§5)"), ["9"]);
    assert!(cited_sections("§ of").is_empty());
}
