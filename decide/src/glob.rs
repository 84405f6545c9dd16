//! Shell-style matching of whole paths (`DELAYSHIM_PATHS`).

/// Shell-style matching of a whole path: `*`, `?` and `[...]` (with `!`
/// and ranges), byte by byte. `*` crosses `/`, like fnmatch without
/// FNM_PATHNAME. Written here because fnmatch may allocate in multibyte
/// locales, and this runs inside host calls.
pub fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, t));
                g += 1;
                continue;
            }
            Some(b'?') => {
                g += 1;
                t += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, end)) = class(glob, g, text[t]) {
                    if matched {
                        g = end;
                        t += 1;
                        continue;
                    }
                } else if text[t] == b'[' {
                    g += 1;
                    t += 1;
                    continue;
                }
            }
            Some(&c) if c == text[t] => {
                g += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_g, star_t)) => {
                g = star_g + 1;
                t = star_t + 1;
                star = Some((star_g, star_t + 1));
            }
            None => return false,
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the class starting at `glob[at]` (`[`); returns
/// whether it matched and where the class ends, or `None` if unclosed.
fn class(glob: &[u8], at: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(glob.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let c = *glob.get(i)?;
        if c == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if glob.get(i + 1) == Some(&b'-') && glob.get(i + 2).is_some_and(|&e| e != b']') {
            let end = glob[i + 2];
            matched |= c <= byte && byte <= end;
            i += 3;
        } else {
            matched |= c == byte;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_paths() {
        assert!(glob_match(b"*/cache.db", b"/a/b/cache.db"));
        assert!(glob_match(b"/tmp/x?", b"/tmp/x1"));
        assert!(!glob_match(b"*/cache.db", b"/a/b/cache.db-wal"));
        assert!(!glob_match(b"/tmp/x?", b"/tmp/x12"));
        assert!(glob_match(b"/tmp/[a-c]x", b"/tmp/bx"));
        assert!(!glob_match(b"/tmp/[!a-c]x", b"/tmp/bx"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"/d/*.json*", b"/d/store.json.tmp"));
        assert!(!glob_match(b"/d/*.json", b"/e/store.json"));
    }
}
