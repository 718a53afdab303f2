//! Who a command runs as: `USER[:GROUP]` resolved against the text of a root file system's
//! `/etc/passwd` and `/etc/group` (passwd(5), group(5)).
//!
//! The files come from a container image, so they are untrusted: lines that do not parse are
//! skipped, and the caller bounds how much is read.

/// A user's resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary group first, without duplicates.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, "/" when the user has no entry.
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} is not USER[:GROUP]")]
    Malformed(String),
    #[error("user {0:?} not found in the root's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} not found in the root's /etc/group")]
    UnknownGroup(String),
}

/// One parsed line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'a str,
}

/// One parsed line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    pub name: &'a str,
    pub gid: u32,
    pub members: Vec<&'a str>,
}

/// The entries of an /etc/passwd text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() != 7 || fields[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0],
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5],
            })
        })
        .collect()
}

/// The entries of an /etc/group text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() != 4 || fields[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: fields[0],
                gid: fields[2].parse().ok()?,
                members: fields[3].split(',').filter(|m| !m.is_empty()).collect(),
            })
        })
        .collect()
}

/// Resolves `spec` (`USER[:GROUP]`, each numeric or a name; empty means root) against the
/// texts of /etc/passwd and /etc/group (empty when the root has none).
///
/// A numeric user without a passwd entry gets gid 0 and home "/"; a name must exist. The
/// supplementary groups are the primary group plus every group listing the user's name.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<Identity, UserError> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if spec.contains('\0')
        || (user.is_empty() && !spec.is_empty())
        || group_spec.is_some_and(|g| g.is_empty() || g.contains(':'))
    {
        return Err(UserError::Malformed(spec.to_string()));
    }
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let user = if user.is_empty() { "0" } else { user };

    let entry = match user.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::UnknownUser(user.to_string()))?,
        ),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user
            .parse::<u32>()
            .map_err(|_| UserError::UnknownUser(user.to_string()))?,
    };
    let gid = match group_spec {
        None => entry.map_or(0, |e| e.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        },
    };
    let mut supplementary = vec![gid];
    if let Some(e) = entry {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            if !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    let home = entry
        .map(|e| e.home)
        .filter(|h| h.starts_with('/'))
        .unwrap_or("/");
    Ok(Identity {
        uid,
        gid,
        groups: supplementary,
        home: home.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          broken line\n\
                          daemon:x:1:1::/usr/sbin:/bin/false\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          bad:x:notanumber:1:::\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
                         wheel:x:10:app,root\n\
                         app:x:1000:\n\
                         audio:x:29:app\n\
                         nogroup:x:65534:\n\
                         junk\n";

    #[test]
    fn test_parse_passwd_malformed_lines_skipped() {
        let entries = parse_passwd(PASSWD);

        let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
        assert_eq!(names, ["root", "daemon", "app", "nobody"]);
        assert_eq!(
            entries[2],
            PasswdEntry {
                name: "app",
                uid: 1000,
                gid: 1000,
                home: "/home/app"
            }
        );
    }

    #[test]
    fn test_parse_group_members_split() {
        let entries = parse_group(GROUP);

        assert_eq!(entries.len(), 5);
        assert_eq!(entries[1].name, "wheel");
        assert_eq!(entries[1].gid, 10);
        assert_eq!(entries[1].members, ["app", "root"]);
        assert!(entries[0].members.is_empty());
    }

    #[test]
    fn test_resolve_user_empty_is_root_with_groups() {
        let id = resolve_user("", PASSWD, GROUP).unwrap();

        assert_eq!(
            id,
            Identity {
                uid: 0,
                gid: 0,
                groups: vec![0, 10],
                home: "/root".into()
            }
        );
    }

    #[test]
    fn test_resolve_user_name_gets_passwd_gid_home_and_groups() {
        let id = resolve_user("app", PASSWD, GROUP).unwrap();

        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.groups, [1000, 10, 29]);
        assert_eq!(id.home, "/home/app");
    }

    #[test]
    fn test_resolve_user_nobody_65534() {
        let id = resolve_user("nobody", PASSWD, GROUP).unwrap();

        assert_eq!((id.uid, id.gid), (65534, 65534));
        assert_eq!(id.groups, [65534]);
    }

    #[test]
    fn test_resolve_user_numeric_without_entry_gid_0_home_root_dir() {
        let id = resolve_user("4242", PASSWD, GROUP).unwrap();

        assert_eq!((id.uid, id.gid), (4242, 0));
        assert_eq!(id.groups, [0]);
        assert_eq!(id.home, "/");
    }

    #[test]
    fn test_resolve_user_numeric_with_entry_uses_entry() {
        let id = resolve_user("1000", PASSWD, "").unwrap();

        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.home, "/home/app");
    }

    #[test]
    fn test_resolve_user_explicit_group_name_or_number() {
        let by_name = resolve_user("app:audio", PASSWD, GROUP).unwrap();
        let by_number = resolve_user("65534:7", PASSWD, GROUP).unwrap();

        assert_eq!((by_name.uid, by_name.gid), (1000, 29));
        assert_eq!(by_name.groups, [29, 10]);
        assert_eq!((by_number.uid, by_number.gid), (65534, 7));
    }

    #[test]
    fn test_resolve_user_no_passwd_file_numeric_ok_name_unknown() {
        assert_eq!(resolve_user("5:6", "", "").unwrap().groups, [6]);
        assert_eq!(
            resolve_user("app", "", ""),
            Err(UserError::UnknownUser("app".into()))
        );
    }

    #[test]
    fn test_resolve_user_unknown_names_error() {
        assert_eq!(
            resolve_user("ghost", PASSWD, GROUP),
            Err(UserError::UnknownUser("ghost".into()))
        );
        assert_eq!(
            resolve_user("app:ghosts", PASSWD, GROUP),
            Err(UserError::UnknownGroup("ghosts".into()))
        );
    }

    #[test]
    fn test_resolve_user_malformed_rejected() {
        for spec in [":", "app:", ":10", "a:b:c", "x\0y"] {
            assert!(
                matches!(
                    resolve_user(spec, PASSWD, GROUP),
                    Err(UserError::Malformed(_))
                ),
                "{spec:?}"
            );
        }
    }
}
