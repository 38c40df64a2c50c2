//! A line diff of two small texts (manifests), for `clrk diff`.

/// Texts longer than this many lines in both are shown as all removed, then all added,
/// rather than matched: matching costs the product of their lengths in memory.
const MATCH_LIMIT: usize = 2000;

/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

/// `old` and `new` line by line, as a diff shows them: removed lines start with `- `, added
/// ones with `+ `, and up to [`CONTEXT`] unchanged lines around each change with two spaces;
/// a line `@@` stands for the unchanged lines left out. `None` when they are equal.
///
/// ```
/// let diff = clrk::line_diff::diff("a\nb\nc\n", "a\nB\nc\n").unwrap();
/// assert_eq!(diff, "  a\n- b\n+ B\n  c\n");
/// assert_eq!(clrk::line_diff::diff("a\n", "a\n"), None);
/// ```
pub fn diff(old: &str, new: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let lines = edits(&old, &new);
    let mut shown = vec![false; lines.len()];
    for (i, (mark, _)) in lines.iter().enumerate() {
        if *mark != "  " {
            let end = (i + CONTEXT + 1).min(lines.len());
            shown[i.saturating_sub(CONTEXT)..end].fill(true);
        }
    }
    let mut out = String::new();
    let mut skipped = false;
    for (i, (mark, text)) in lines.iter().enumerate() {
        if !shown[i] {
            skipped = true;
            continue;
        }
        if skipped {
            out.push_str("@@\n");
        }
        skipped = false;
        out.push_str(mark);
        out.push_str(text);
        out.push('\n');
    }
    if skipped {
        out.push_str("@@\n");
    }
    Some(out)
}

/// Every line of both, marked `  ` (in both), `- ` (only in `old`) or `+ ` (only in `new`),
/// removals before additions.
fn edits<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<(&'static str, &'a str)> {
    let mut lines = Vec::with_capacity(old.len() + new.len());
    if old.len().min(new.len()) > MATCH_LIMIT {
        lines.extend(old.iter().map(|l| ("- ", *l)));
        lines.extend(new.iter().map(|l| ("+ ", *l)));
        return lines;
    }
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0u32; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            lines.push(("  ", old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(("- ", old[i]));
            i += 1;
        } else {
            lines.push(("+ ", new[j]));
            j += 1;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_unchanged_lines_are_left_out() {
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new = old.replace("10\n", "ten\n");
        assert_eq!(
            diff(&old, &new).unwrap(),
            "@@\n  7\n  8\n  9\n- 10\n+ ten\n  11\n  12\n  13\n@@\n"
        );
    }

    #[test]
    fn removed_lines_come_before_added_ones_and_ends_are_kept() {
        assert_eq!(diff("a\nb\n", "a\nc\nd\n").unwrap(), "  a\n- b\n+ c\n+ d\n");
        assert_eq!(diff("", "x\n").unwrap(), "+ x\n");
        assert_eq!(diff("x\n", "").unwrap(), "- x\n");
    }
}
