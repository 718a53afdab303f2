//! The tc redirect between the veth and the tap: on each side an `ingress` qdisc and one u32
//! filter matching every frame (`match u8 0 0`) whose action is `mirred egress redirect` to the
//! other side, what `tc filter add dev A ingress prio 0x7a6e protocol all u32 match u8 0 0
//! action mirred egress redirect dev B` builds.
//!
//! Our filters sit at a fixed priority ([`FILTER_PRIORITY`]): that is how a later attach finds
//! and replaces a stale one, and how detach removes ours and leaves other filters alone.
//!
//! Two details of rtnetlink 0.24 that matter here: `protocol()` stores its argument as the
//! kernel reads `tcm_info`'s low half, in network byte order, so ETH_P_ALL must be passed as
//! `0x0003u16.to_be()` (the crate's own test passes `0x0003`, which is protocol 0x0300 and
//! matches nothing); and `redirect()` builds the u32 selector (one all-zero key, terminal flag)
//! and the mirred action (`TCA_EGRESS_REDIR`, `TC_ACT_STOLEN`) that iproute2 builds.

use futures_util::TryStreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Error, Handle};

/// The priority (`pref`) of our redirect filters: "zn".
pub const FILTER_PRIORITY: u16 = 0x7a6e;

const ETH_P_ALL: u16 = 0x0003;

/// `ffff:fff2`, the ingress side of an `ingress` or `clsact` qdisc (what `tc filter ... ingress`
/// sends).
const INGRESS_PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: TcHandle::MIN_INGRESS,
};

/// The errno of a netlink error answer, if that is what `err` is.
pub fn errno(err: &Error) -> Option<i32> {
    match err {
        Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// The kind (`ingress` or `clsact`) of the qdisc on the ingress side of `index`, if there is one.
pub async fn ingress_qdisc(handle: &Handle, index: u32) -> Result<Option<String>, Error> {
    let mut qdiscs = handle.qdisc().get().execute();
    while let Some(q) = qdiscs.try_next().await? {
        if q.header.index == index as i32 && q.header.parent == TcHandle::INGRESS {
            let kind = q.attributes.iter().find_map(|a| match a {
                TcAttribute::Kind(k) => Some(k.clone()),
                _ => None,
            });
            return Ok(Some(kind.unwrap_or_default()));
        }
    }
    Ok(None)
}

/// Adds an `ingress` qdisc to `index` unless it has one (or a `clsact`) already; true if it
/// added one.
pub async fn ensure_ingress_qdisc(handle: &Handle, index: u32) -> Result<bool, Error> {
    if ingress_qdisc(handle, index).await?.is_some() {
        return Ok(false);
    }
    match handle.qdisc().add(index as i32).ingress().execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the `ingress` qdisc of `index` (and with it every ingress filter); true if there
/// was one. A `clsact` qdisc is not ours and stays.
pub async fn delete_ingress_qdisc(handle: &Handle, index: u32) -> Result<bool, Error> {
    if ingress_qdisc(handle, index).await?.as_deref() != Some("ingress") {
        return Ok(false);
    }
    let mut req = handle.qdisc().del(index as i32);
    req.message_mut().header.parent = TcHandle::INGRESS;
    req.message_mut().header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    match req.execute().await {
        Ok(()) => Ok(true),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::EINVAL)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The ingress filters of `index` as (priority, kind), one entry per filter message the kernel
/// dumps (a u32 filter shows up as its hash table and its key).
pub async fn ingress_filters(handle: &Handle, index: u32) -> Result<Vec<(u16, String)>, Error> {
    let mut out = Vec::new();
    let mut filters = handle
        .traffic_filter(index as i32)
        .get()
        .ingress()
        .execute();
    while let Some(f) = filters.try_next().await? {
        let kind = f
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Kind(k) => Some(k.clone()),
                _ => None,
            })
            .unwrap_or_default();
        out.push(((f.header.info >> 16) as u16, kind));
    }
    Ok(out)
}

/// Deletes the ingress filters of `index` at [`FILTER_PRIORITY`]; true if there were any.
pub async fn delete_redirect(handle: &Handle, index: u32) -> Result<bool, Error> {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = INGRESS_PARENT;
    // Priority in the high half, protocol 0 (any) in the low half: the whole filter at that
    // priority goes.
    msg.header.info = u32::from(FILTER_PRIORITY) << 16;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelTrafficFilter(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut handle = handle.clone();
    let mut answers = handle.request(req)?;
    while let Some(answer) = futures_util::StreamExt::next(&mut answers).await {
        if let NetlinkPayload::Error(err) = answer.payload {
            if err.code.is_some() {
                let err = Error::NetlinkError(err);
                // ENOENT: no filter at that priority; EINVAL: no ingress qdisc at all.
                if matches!(errno(&err), Some(libc::ENOENT | libc::EINVAL)) {
                    return Ok(false);
                }
                return Err(err);
            }
        }
    }
    Ok(true)
}

/// Redirects every frame arriving at `from` to the egress of `to`, replacing an earlier
/// redirect of ours on `from`. `from` must have an ingress qdisc.
pub async fn redirect(handle: &Handle, from: u32, to: u32) -> Result<(), Error> {
    delete_redirect(handle, from).await?;
    handle
        .traffic_filter(from as i32)
        .add()
        .ingress()
        .priority(FILTER_PRIORITY)
        .protocol(ETH_P_ALL.to_be())
        .redirect(to)?
        .execute()
        .await
}
