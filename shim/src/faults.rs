//! `DELAYSHIM_FAULTS`: errors and short transfers that real disks and
//! kernels return, injected so that a program's error paths run.

use std::ffi::c_int;

use crate::table::{family_set, Family, FuncSet, FUNCS};

/// What an injected fault does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this errno, without being performed.
    Errno(c_int),
    /// A read or write transfers only part of its count.
    Short,
}

/// One `FUNCTION_OR_FAMILY:KIND:PROBABILITY` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub funcs: FuncSet,
    pub fault: Fault,
    pub prob: f64,
}

/// The errors each family can really return, from its manual pages.
#[rustfmt::skip]
fn possible(family: Family) -> &'static [&'static str] {
    match family {
        Family::Write | Family::Pwrite => &["EIO", "ENOSPC", "EDQUOT", "EINTR", "EAGAIN", "EWOULDBLOCK", "EBADF", "EINVAL", "EFBIG", "EPERM"],
        Family::Read | Family::Pread => &["EIO", "EINTR", "EAGAIN", "EWOULDBLOCK", "EBADF", "EINVAL", "EISDIR"],
        Family::Fsync => &["EIO", "ENOSPC", "EDQUOT", "EINTR", "EBADF", "EINVAL", "EROFS", "ENOMEM", "EBUSY"],
        Family::Fcntl => &["EINTR", "EAGAIN", "EACCES", "EDEADLK", "ENOLCK", "EBADF", "EINVAL", "EMFILE", "EBUSY", "EPERM"],
        Family::Flock => &["EINTR", "EWOULDBLOCK", "EAGAIN", "EACCES", "EDEADLK", "ENOLCK", "EBADF", "EINVAL"],
        Family::Open => &["EACCES", "EEXIST", "EINTR", "EISDIR", "EMFILE", "ENFILE", "ENOENT", "ENOSPC", "EDQUOT", "ENOMEM", "EROFS", "ELOOP", "ENAMETOOLONG", "ENOTDIR", "EPERM", "EFBIG", "EBUSY"],
        Family::Close => &["EIO", "EINTR", "EBADF", "ENOSPC", "EDQUOT"],
        Family::Rename => &["EACCES", "EBUSY", "EDQUOT", "EEXIST", "ENOTEMPTY", "EINVAL", "EIO", "EISDIR", "ELOOP", "EMLINK", "ENAMETOOLONG", "ENOENT", "ENOMEM", "ENOSPC", "ENOTDIR", "EPERM", "EROFS", "EXDEV"],
        Family::Unlink => &["EACCES", "EBUSY", "EIO", "EISDIR", "ELOOP", "ENAMETOOLONG", "ENOENT", "ENOMEM", "ENOTDIR", "EPERM", "EROFS", "ENOTEMPTY"],
        Family::Link => &["EACCES", "EDQUOT", "EEXIST", "EIO", "ELOOP", "EMLINK", "ENAMETOOLONG", "ENOENT", "ENOMEM", "ENOSPC", "ENOTDIR", "EPERM", "EROFS", "EXDEV"],
        Family::Mkdir => &["EACCES", "EDQUOT", "EEXIST", "ELOOP", "EMLINK", "ENAMETOOLONG", "ENOENT", "ENOMEM", "ENOSPC", "ENOTDIR", "EPERM", "EROFS", "EBUSY", "ENOTEMPTY", "EINVAL"],
        Family::Truncate => &["EIO", "EINTR", "EFBIG", "EINVAL", "EPERM", "ENOSPC", "EROFS", "EACCES", "EBADF", "EISDIR", "ENOENT", "EDQUOT"],
    }
}

pub use delayshim_decide::errnos::{errno_name, errno_named, ERRNOS};

/// Parses `DELAYSHIM_FAULTS`; the error says which rule is wrong and why.
pub fn parse_rules(value: &str) -> Result<Vec<FaultRule>, String> {
    value
        .split(',')
        .map(|rule| parse_rule(rule.trim()))
        .collect()
}

fn parse_rule(rule: &str) -> Result<FaultRule, String> {
    let form = "FUNCTION_OR_FAMILY:KIND:PROBABILITY rules, KIND an errno name or short";
    let mut parts = rule.split(':');
    let (Some(target), Some(kind), Some(prob), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{form}; rule {rule:?} does not have three parts"));
    };
    let funcs: Vec<usize> = match Family::ALL.iter().find(|f| f.name() == target) {
        Some(&family) => (0..FUNCS.len())
            .filter(|&i| family_set(family) & 1 << i != 0)
            .collect(),
        None => match FUNCS.iter().position(|f| f.name == target) {
            Some(i) => vec![i],
            None => {
                return Err(format!(
                "{form}; rule {rule:?}: {target:?} is neither a family nor an interposed function"
            ))
            }
        },
    };
    let prob = prob
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("{form}; rule {rule:?}: the probability must be from 0 to 1"))?;
    let mut funcs = funcs;
    let fault = if kind == "short" {
        // A family rule applies to the family's functions that can be
        // made short (write, not writev); a function must be one of them.
        funcs.retain(|&i| FUNCS[i].can_short);
        if funcs.is_empty() {
            return Err(format!(
                "{form}; rule {rule:?}: {target} cannot be made short (only read, write, pread and pwrite with one buffer)"
            ));
        }
        Fault::Short
    } else {
        let Some(&(_, errno)) = ERRNOS.iter().find(|(name, _)| *name == kind) else {
            return Err(format!(
                "{form}; rule {rule:?}: {kind:?} is not an errno name the shim knows"
            ));
        };
        if let Some(&i) = funcs
            .iter()
            .find(|&&i| !possible(FUNCS[i].family).contains(&kind))
        {
            return Err(format!(
                "{form}; rule {rule:?}: {} never fails with {kind} (it can: {})",
                FUNCS[i].name,
                possible(FUNCS[i].family).join(" ")
            ));
        }
        Fault::Errno(errno)
    };
    Ok(FaultRule {
        funcs: funcs.iter().fold(0, |set, &i| set | 1 << i),
        fault,
        prob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Func;

    #[test]
    fn rules_parse_by_family_and_function() {
        let rules =
            parse_rules("fsync:EIO:0.01,pwrite:ENOSPC:0.001,write:short:0.05,fcntl64:EINTR:1")
                .unwrap();
        assert_eq!(rules[0].funcs, family_set(Family::Fsync));
        assert_eq!(rules[0].fault, Fault::Errno(libc::EIO));
        assert_eq!(rules[2].fault, Fault::Short);
        assert_ne!(rules[2].funcs & Func::write.bit(), 0);
        assert_eq!(rules[3].funcs, Func::fcntl64.bit());
        assert_eq!(rules[3].prob, 1.0);
        assert_eq!(errno_name(libc::ENOSPC), "ENOSPC");
    }

    #[test]
    fn impossible_rules_name_the_rule() {
        for bad in [
            "fsync:EEXIST:0.1",
            "writev:short:0.1",
            "write:short",
            "nosuch:EIO:0.1",
            "fsync:EFOO:0.1",
            "fsync:EIO:2",
            "",
        ] {
            let error = parse_rules(bad).unwrap_err();
            assert!(error.contains("rule"), "{bad}: {error}");
        }
    }
}
