//! Whether a seccomp filter the program installs leaves the shim its own
//! system calls. A sandbox that allows only what the program needs
//! (strict mode, or an allow-list of read, write and exit) kills or fails
//! the shim's sleeps, output and checks; the shim must then stop making
//! them rather than get its host killed.
//!
//! The filter is classic BPF over `struct seccomp_data`, run here for each
//! system call the shim makes, with this architecture. A filter whose
//! answer for one of them depends on the arguments or the instruction
//! pointer, or that is not plainly ALLOW (or LOG), does not spare the shim.

use std::ffi::c_long;

/// The system calls the shim itself makes after load: sleeping, its
/// output files, SIGPIPE-safe writes, its checks and its pool.
const SHIMS_OWN: &[c_long] = &[
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_mmap,
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;
const DATA_LEN: u32 = 64;
/// The kernel's limit on one filter's length.
pub(crate) const MAX_INSNS: usize = 4096;

/// One BPF instruction, as `struct sock_filter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Whether `program` answers ALLOW for every system call the shim makes,
/// whatever their arguments.
pub(crate) fn spares_the_shim(program: &dyn Fn(usize) -> Option<Insn>, len: usize) -> bool {
    len > 0
        && len <= MAX_INSNS
        && SHIMS_OWN.iter().all(|&nr| {
            matches!(
                run(program, len, nr as u32),
                Some(action) if action == SECCOMP_RET_ALLOW || action == SECCOMP_RET_LOG
            )
        })
}

/// Runs the filter for system call `nr`: its action, or `None` when the
/// answer depends on more than the number and architecture, or the
/// program is not one the kernel would have accepted.
fn run(program: &dyn Fn(usize) -> Option<Insn>, len: usize, nr: u32) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut scratch = [0u32; 16];
    let mut pc = 0usize;
    // Jumps only go forward, so a program ends within `len` steps.
    for _ in 0..len {
        let insn = program(pc)?;
        pc += 1;
        let k = insn.k;
        let src = if insn.code & 0x08 != 0 { x } else { k };
        match insn.code & 0x07 {
            // BPF_LD
            0x00 => {
                a = match insn.code & 0xe0 {
                    0x20 if insn.code & 0x18 == 0 => load(k, nr)?, // BPF_ABS | BPF_W
                    0x00 => k,                                     // BPF_IMM
                    0x60 => *scratch.get(k as usize)?,             // BPF_MEM
                    0x80 => DATA_LEN,                              // BPF_LEN
                    _ => return None,
                }
            }
            // BPF_LDX
            0x01 => {
                x = match insn.code & 0xe0 {
                    0x00 => k,
                    0x60 => *scratch.get(k as usize)?,
                    0x80 => DATA_LEN,
                    _ => return None,
                }
            }
            0x02 => *scratch.get_mut(k as usize)? = a, // BPF_ST
            0x03 => *scratch.get_mut(k as usize)? = x, // BPF_STX
            // BPF_ALU
            0x04 => {
                a = match insn.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => a.checked_div(src)?,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(src)?,
                    0xa0 => a ^ src,
                    _ => return None,
                }
            }
            // BPF_JMP
            0x05 => {
                let op = insn.code & 0xf0;
                let offset = if op == 0x00 {
                    k as usize // BPF_JA
                } else {
                    let taken = match op {
                        0x10 => a == src,
                        0x20 => a > src,
                        0x30 => a >= src,
                        0x40 => a & src != 0,
                        _ => return None,
                    };
                    usize::from(if taken { insn.jt } else { insn.jf })
                };
                pc = pc.checked_add(offset).filter(|&to| to < len)?;
            }
            // BPF_RET
            0x06 => {
                let value = match insn.code & 0x18 {
                    0x00 => k,
                    0x10 => a,
                    _ => return None,
                };
                return Some(value & SECCOMP_RET_ACTION_FULL);
            }
            // BPF_MISC: TAX, TXA
            _ => match insn.code & 0xf8 {
                0x00 => x = a,
                0x80 => a = x,
                _ => return None,
            },
        }
    }
    None
}

/// A 32-bit load from `struct seccomp_data`: the number or the
/// architecture; anything past them makes the answer unknown.
fn load(offset: u32, nr: u32) -> Option<u32> {
    match offset {
        0 => Some(nr),
        4 => Some(AUDIT_ARCH),
        // The instruction pointer and the arguments: not known here.
        _ => None,
    }
}

/// What a `prctl` or `seccomp` call asks to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Install {
    /// Strict mode: read, write, exit and sigreturn only.
    Strict,
    /// A filter program, at this `struct sock_fprog` address.
    Filter(usize),
}

impl Install {
    /// From `syscall(number, a1, a2, a3)`'s arguments (or `prctl`'s, with
    /// `SYS_prctl` as the number).
    pub(crate) fn of(number: c_long, a1: c_long, a2: c_long, a3: c_long) -> Option<Install> {
        let number = c_long::from(number as u32);
        if number == libc::SYS_seccomp {
            match a1 as u32 {
                libc::SECCOMP_SET_MODE_STRICT => Some(Install::Strict),
                libc::SECCOMP_SET_MODE_FILTER => Some(Install::Filter(a3 as usize)),
                _ => None,
            }
        } else if number == libc::SYS_prctl && a1 == c_long::from(libc::PR_SET_SECCOMP) {
            match a2 as u32 {
                libc::SECCOMP_MODE_STRICT => Some(Install::Strict),
                libc::SECCOMP_MODE_FILTER => Some(Install::Filter(a3 as usize)),
                _ => None,
            }
        } else {
            None
        }
    }

    /// Whether what is installed spares the shim's own calls, reading the
    /// program with `read(address, bytes)`; `None` when it cannot be read.
    pub(crate) fn spares_the_shim(self, read: &dyn Fn(usize, &mut [u8]) -> bool) -> Option<bool> {
        let Install::Filter(fprog) = self else {
            return Some(false);
        };
        // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        let mut header = [0u8; 16];
        if !read(fprog, &mut header) {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let filter = usize::from_ne_bytes(header[8..16].try_into().ok()?);
        let insn = |i: usize| {
            let mut raw = [0u8; 8];
            read(filter.checked_add(i.checked_mul(8)?)?, &mut raw).then(|| Insn {
                code: u16::from_ne_bytes([raw[0], raw[1]]),
                jt: raw[2],
                jf: raw[3],
                k: u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]),
            })
        };
        // An unreadable instruction ends the run as "unknown", which does
        // not spare: the same answer as a filter that kills.
        Some(spares_the_shim(&insn, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LD_NR: Insn = Insn {
        code: 0x20,
        jt: 0,
        jf: 0,
        k: 0,
    };
    fn ret(k: u32) -> Insn {
        Insn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
        Insn {
            code: 0x15,
            jt,
            jf,
            k,
        }
    }
    fn spares(program: &[Insn]) -> bool {
        spares_the_shim(&|i| program.get(i).copied(), program.len())
    }
    const KILL: u32 = 0x8000_0000;

    #[test]
    fn a_deny_list_that_leaves_the_shim_alone_spares_it() {
        let kill_vm_readv = [
            LD_NR,
            jeq(libc::SYS_process_vm_readv as u32, 0, 1),
            ret(KILL),
            ret(SECCOMP_RET_ALLOW),
        ];
        assert!(spares(&kill_vm_readv));
    }

    #[test]
    fn an_allow_list_of_read_write_and_exit_does_not() {
        let allow = [
            LD_NR,
            jeq(libc::SYS_read as u32, 3, 0),
            jeq(libc::SYS_write as u32, 2, 0),
            jeq(libc::SYS_exit_group as u32, 1, 0),
            ret(KILL),
            ret(SECCOMP_RET_ALLOW),
        ];
        assert!(!spares(&allow));
        // Killing only the shim's sleep is enough to be refused.
        let no_sleep = [
            LD_NR,
            jeq(libc::SYS_clock_nanosleep as u32, 0, 1),
            ret(0x0005_0000 | 1), // ERRNO(EPERM)
            ret(SECCOMP_RET_ALLOW),
        ];
        assert!(!spares(&no_sleep));
    }

    #[test]
    fn answers_that_read_arguments_or_malformed_programs_do_not() {
        let by_argument = [
            Insn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 16, // args[0]
            },
            ret(SECCOMP_RET_ALLOW),
        ];
        assert!(!spares(&by_argument));
        assert!(!spares(&[]));
        assert!(!spares(&[LD_NR])); // falls off the end
        assert!(!spares(&[LD_NR, jeq(0, 9, 9), ret(SECCOMP_RET_ALLOW)])); // jumps out
                                                                          // An architecture check, then allow: spared.
        let arch = [
            Insn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            jeq(AUDIT_ARCH, 1, 0),
            ret(KILL),
            ret(SECCOMP_RET_ALLOW),
        ];
        assert!(spares(&arch));
    }
}
