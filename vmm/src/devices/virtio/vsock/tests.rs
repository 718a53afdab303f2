//! End-to-end tests of the device: mock virtqueues in real guest memory, the muxer stepped on
//! the test thread (or the device's worker), and real Unix sockets in a temporary directory.

mod harness;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress};

use super::packet::*;
use super::uds;
use super::Vsock;
use crate::devices::virtio::VirtioDevice;
use harness::*;

#[test]
fn test_host_connect_guest_receives_request() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let _s = host_connect(&path, b"CONNECT 52\n");
    g.add_rx(1);
    let (req, data) = expect(&mut mux, &mut g, |h| h.op == OP_REQUEST);
    assert!(data.is_empty());
    assert_eq!((req.src_cid, req.dst_cid), (HOST_CID, CID));
    assert_eq!((req.src_port, req.dst_port), (HOST_PORT0, 52));
    assert_eq!(req.socket_type, TYPE_STREAM);
    assert!(g.irq.0.load(Ordering::SeqCst) > 0);
}

#[test]
fn test_host_connect_guest_response_host_reads_ok() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (_s, port) = host_established(&mut mux, &mut g, &path, 4096);
    assert_eq!(port, HOST_PORT0);
}

#[test]
fn test_host_connect_data_relayed_both_ways_with_credit() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (mut s, port) = host_established(&mut mux, &mut g, &path, 8);
    s.write_all(b"0123456789abcdef").expect("host write");
    let (h, data) = expect(&mut mux, &mut g, |h| h.op == OP_RW);
    assert_eq!(
        data, b"01234567",
        "limited to the guest's 8 bytes of credit"
    );
    assert_eq!((h.src_port, h.dst_port, h.len), (port, 52, 8));
    expect(&mut mux, &mut g, |h| h.op == OP_CREDIT_REQUEST);
    for _ in 0..5 {
        mux.poll_once(Some(Duration::from_millis(5))).expect("poll");
    }
    assert!(
        g.take(|h| h.op == OP_RW).is_none(),
        "no data without credit"
    );
    g.send(gh(OP_CREDIT_UPDATE, 52, port, 0, 8, 8), &[]);
    let (_, data) = expect(&mut mux, &mut g, |h| h.op == OP_RW);
    assert_eq!(data, b"89abcdef");

    send_and_wait(&mut mux, &mut g, gh(OP_RW, 52, port, 4, 8, 16), b"pong");
    assert_eq!(read_n(&mut s, 4), b"pong");
    g.send(gh(OP_CREDIT_REQUEST, 52, port, 0, 8, 16), &[]);
    let (upd, _) = expect(&mut mux, &mut g, |h| h.op == OP_CREDIT_UPDATE);
    assert_eq!(upd.fwd_cnt, 4);
    assert_eq!(upd.buf_alloc, super::credit::CONN_BUF_ALLOC);
}

#[test]
fn test_host_connect_guest_rst_closes_unix_connection() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let mut s = host_connect(&path, b"CONNECT 99\n");
    g.add_rx(1);
    let (req, _) = expect(&mut mux, &mut g, |h| h.op == OP_REQUEST);
    send_and_wait(&mut mux, &mut g, gh(OP_RST, 99, req.src_port, 0, 0, 0), &[]);
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).expect("eof"), 0);
}

#[test]
fn test_host_connect_malformed_line_closes_unix_connection() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    g.add_rx(2);
    for line in [&b"CONNECT x\n"[..], &[b'A'; 40], b"CONNECT 1 2\n"] {
        let mut s = host_connect(&path, line);
        for _ in 0..5 {
            mux.poll_once(Some(Duration::from_millis(5))).expect("poll");
        }
        assert_closed(&mut s);
    }
    g.collect();
    assert!(g.received.is_empty(), "nothing reached the guest");
}

#[test]
fn test_guest_connect_with_listener_relays_data() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let listener = UnixListener::bind(uds::forward_path(&path, 1234)).expect("bind P_1234");
    g.add_rx(4);
    g.send(gh(OP_REQUEST, 5000, 1234, 0, 4096, 0), &[]);
    let (resp, _) = expect(&mut mux, &mut g, |h| h.op == OP_RESPONSE);
    assert_eq!(
        (resp.src_port, resp.dst_port, resp.dst_cid),
        (1234, 5000, CID)
    );
    let (mut s, _) = listener.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    send_and_wait(&mut mux, &mut g, gh(OP_RW, 5000, 1234, 2, 4096, 0), b"hi");
    assert_eq!(read_n(&mut s, 2), b"hi");
    s.write_all(b"yo").expect("write");
    let (h, data) = expect(&mut mux, &mut g, |h| h.op == OP_RW);
    assert_eq!(data, b"yo");
    assert_eq!((h.fwd_cnt, h.dst_port), (2, 5000));
}

#[test]
fn test_guest_connect_without_listener_gets_rst() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    g.add_rx(1);
    g.send(gh(OP_REQUEST, 5000, 4321, 0, 4096, 0), &[]);
    let (rst, _) = expect(&mut mux, &mut g, |h| h.op == OP_RST);
    assert_eq!((rst.src_port, rst.dst_port, rst.dst_cid), (4321, 5000, CID));
}

#[test]
fn test_malformed_tx_dropped_other_connections_keep_working() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (mut s, port) = host_established(&mut mux, &mut g, &path, 4096);
    let good = gh(OP_RW, 52, port, 3, 4096, 0);
    const W: u16 = VRING_DESC_F_WRITE as u16;
    // (header, chain as (offset from the header, length, flags)); offsets >= 1 GiB lie
    // outside guest memory.
    let cases: [(Header, Chain); 10] = [
        (good, &[(0, 20, 0)]),                          // chain too short
        (Header { src_cid: 9, ..good }, &[(0, 47, 0)]), // wrong src_cid
        (Header { dst_cid: 7, ..good }, &[(0, 47, 0)]), // wrong dst_cid
        (Header { len: 4000, ..good }, &[(0, 100, 0)]), // len beyond buffer
        (
            Header {
                len: u32::MAX,
                ..good
            },
            &[(0, 100, 0)],
        ), // huge len
        (good, &[(0, 47, W)]),                          // wrong direction
        (good, &[(0, 44, 0), (1 << 30, 3, 0)]),         // outside memory
        (
            Header {
                socket_type: 2,
                ..good
            },
            &[(0, 47, 0)],
        ), // seqpacket
        (
            Header {
                op: 99,
                len: 0,
                ..good
            },
            &[(0, 44, 0)],
        ), // unknown op
        (
            Header {
                op: OP_CREDIT_UPDATE,
                ..good
            },
            &[(0, 47, 0)],
        ), // payload on control
    ];
    let before = g.tx_used();
    for (i, (hdr, chain)) in cases.iter().enumerate() {
        let base = TX_BUFS + 0x100_0000 + i as u64 * 0x1000;
        mem.write_slice(&hdr.to_bytes(), GuestAddress(base))
            .expect("hdr");
        let chain: Vec<_> = chain.iter().map(|&(o, l, f)| (base + o, l, f)).collect();
        g.send_chain(&chain);
    }
    let target = before.wrapping_add(cases.len() as u16);
    pump(&mut mux, &mut g, |g| g.tx_used() == target);
    // Bad type and op are answered with a reset; the rest is dropped silently.
    expect(&mut mux, &mut g, |h| h.op == OP_RST);
    expect(&mut mux, &mut g, |h| h.op == OP_RST);
    send_and_wait(&mut mux, &mut g, good, b"abc");
    assert_eq!(read_n(&mut s, 3), b"abc");
    s.write_all(b"still here").expect("write");
    let (_, data) = expect(&mut mux, &mut g, |h| h.op == OP_RW);
    assert_eq!(data, b"still here");
}

#[test]
fn test_malformed_rx_buffer_skipped_next_buffer_used() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    g.add_rx_chain(&[(RX_BUFS, 4096, 0)]); // device-readable: wrong direction
    g.add_rx_chain(&[(RX_BUFS + SLOT, 20, VRING_DESC_F_WRITE as u16)]); // too short
    let hdr_part = RX_BUFS + 2 * SLOT;
    g.add_rx_chain(&[
        (hdr_part, HDR_LEN as u32, VRING_DESC_F_WRITE as u16),
        (hdr_part + HDR_LEN as u64, 100, VRING_DESC_F_WRITE as u16),
    ]);
    g.send(gh(OP_REQUEST, 5000, 4321, 0, 4096, 0), &[]);
    expect(&mut mux, &mut g, |h| h.op == OP_RST);
    assert_eq!(g.empty_rx, 2);
}

#[test]
fn test_connection_limit_refuses_guest_and_host_connections() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    mux.set_max_connections(2);
    let listener = UnixListener::bind(uds::forward_path(&path, 80)).expect("bind P_80");
    g.add_rx(4);
    for src in [5000, 5001, 5002] {
        g.send(gh(OP_REQUEST, src, 80, 0, 4096, 0), &[]);
    }
    expect(&mut mux, &mut g, |h| {
        h.op == OP_RESPONSE && h.dst_port == 5000
    });
    expect(&mut mux, &mut g, |h| {
        h.op == OP_RESPONSE && h.dst_port == 5001
    });
    expect(&mut mux, &mut g, |h| h.op == OP_RST && h.dst_port == 5002);
    let mut s = host_connect(&path, b"CONNECT 52\n");
    for _ in 0..5 {
        mux.poll_once(Some(Duration::from_millis(5))).expect("poll");
    }
    assert_closed(&mut s);
    assert!(g.take(|h| h.op == OP_REQUEST).is_none());
    drop(listener);
}

#[test]
fn test_packet_for_unknown_connection_gets_rst() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    g.add_rx(1);
    g.send(gh(OP_RW, 7, 8, 1, 4096, 0), b"x");
    let (rst, _) = expect(&mut mux, &mut g, |h| h.op == OP_RST);
    assert_eq!((rst.src_port, rst.dst_port), (8, 7));
}

#[test]
fn test_host_close_sends_shutdown_then_guest_rst_removes() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (s, port) = host_established(&mut mux, &mut g, &path, 4096);
    drop(s);
    let (sd, _) = expect(&mut mux, &mut g, |h| h.op == OP_SHUTDOWN);
    assert_eq!(sd.flags, SHUTDOWN_BOTH);
    send_and_wait(&mut mux, &mut g, gh(OP_RST, 52, port, 0, 4096, 0), &[]);
    g.send(gh(OP_RW, 52, port, 1, 4096, 0), b"x");
    expect(&mut mux, &mut g, |h| h.op == OP_RST && h.dst_port == 52);
}

#[test]
fn test_guest_shutdown_closes_host_stream() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (mut s, port) = host_established(&mut mux, &mut g, &path, 4096);
    let mut shut = gh(OP_SHUTDOWN, 52, port, 0, 4096, 0);
    shut.flags = SHUTDOWN_BOTH;
    g.send(shut, &[]);
    expect(&mut mux, &mut g, |h| h.op == OP_RST);
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf).expect("eof"), 0);
}

#[test]
fn test_vsock_activate_serves_then_reset_closes_and_rebinds() {
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    g.add_rx(2);
    let mut dev = Vsock::new(CID, &path).expect("new");
    dev.activate(g.activation()).expect("activate");
    let mut s = host_connect(&path, b"CONNECT 52\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.take(|h| h.op == OP_REQUEST).is_none() {
        assert!(Instant::now() < deadline, "worker never sent the request");
        std::thread::sleep(Duration::from_millis(5));
    }
    dev.reset();
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf).expect("closed by reset"), 0);
    assert!(
        UnixStream::connect(&path).is_ok(),
        "listener rebound for the next activation"
    );
    drop(dev);
    assert!(!path.exists());
}

#[test]
fn test_bulk_host_to_guest_never_exceeds_guest_credit() {
    const TOTAL: usize = 2 * 1024 * 1024;
    const GUEST_BUF: u32 = 64 * 1024;
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (s, port) = host_established(&mut mux, &mut g, &path, GUEST_BUF);
    let sent: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone().expect("dup");
    let expected = sent.clone();
    let feeder = std::thread::spawn(move || writer.write_all(&sent).expect("host write"));
    let mut got = Vec::new();
    let mut consumed = 0u32;
    for _ in 0..20_000 {
        if got.len() == TOTAL {
            break;
        }
        if g.rx_outstanding() < 16 {
            g.add_rx(16);
        }
        mux.poll_once(Some(Duration::from_millis(10)))
            .expect("poll");
        while let Some((_, data)) = g.take(|h| h.op == OP_RW) {
            got.extend_from_slice(&data);
            let in_flight = got.len() as u32 - consumed;
            assert!(in_flight <= GUEST_BUF, "device overran the guest's credit");
        }
        // The guest application reads everything and tells the device.
        if got.len() as u32 != consumed {
            consumed = got.len() as u32;
            g.send(gh(OP_CREDIT_UPDATE, 52, port, 0, GUEST_BUF, consumed), &[]);
        }
    }
    // Closing the device's end unblocks the feeder if the transfer stalled.
    drop(mux);
    let fed = feeder.join();
    assert_eq!(got.len(), TOTAL);
    fed.expect("feeder");
    assert!(got == expected, "stream corrupted");
}

#[test]
fn test_bulk_guest_to_host_follows_device_credit() {
    const TOTAL: usize = 1024 * 1024;
    const CHUNK: usize = 4096;
    let (_dir, path) = setup();
    let mem = test_mem();
    let mut g = Guest::new(&mem);
    let mut mux = g.muxer(&path);
    let (s, port) = host_established(&mut mux, &mut g, &path, 4096);
    let mut reader = s.try_clone().expect("dup");
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; TOTAL];
        reader.read_exact(&mut buf).expect("host read");
        buf
    });
    let (mut buf_alloc, mut fwd_cnt) = (super::credit::CONN_BUF_ALLOC, 0u32);
    let mut sent = 0usize;
    for _ in 0..20_000 {
        if sent == TOTAL {
            break;
        }
        if g.rx_outstanding() < 8 {
            g.add_rx(8);
        }
        let credit = buf_alloc - (sent as u32 - fwd_cnt);
        let mut batch = 0;
        while sent < TOTAL && credit as usize >= (batch + 1) * CHUNK && batch < 32 {
            let data: Vec<u8> = (sent..sent + CHUNK).map(|i| (i % 253) as u8).collect();
            g.send(gh(OP_RW, 52, port, CHUNK as u32, 4096, 0), &data);
            sent += CHUNK;
            batch += 1;
        }
        mux.poll_once(Some(Duration::from_millis(10)))
            .expect("poll");
        g.collect();
        for (h, _) in g.received.drain(..) {
            (buf_alloc, fwd_cnt) = (h.buf_alloc, h.fwd_cnt);
        }
    }
    // Everything is queued; the device may still be forwarding the last chunks to the host.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !drain.is_finished() && Instant::now() < deadline {
        mux.poll_once(Some(Duration::from_millis(10)))
            .expect("poll");
    }
    drop(mux);
    assert_eq!(sent, TOTAL, "guest starved of credit");
    let host = drain.join().expect("drain");
    assert!(host.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8));
}
