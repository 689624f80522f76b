//! Micro-benchmarks of the per-packet hot path, so regressions show up in review:
//! SRTP protect/unprotect (AEAD_AES_256_GCM with str0m's aws-lc-rs provider, as the sfuserver
//! uses), the RTP header rewrite done per subscriber, and the fan-out of one received packet
//! to M subscribers (decrypt once; rewrite and encrypt per subscriber).
//!
//!   cargo bench --bench hot_path

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use meeting_appliance::loadtest::srtp::{Rewrite, SrtpContext, provider, rtp_packet};

fn srtp(c: &mut Criterion) {
    let p = provider();
    let mut g = c.benchmark_group("srtp_aead_aes_256_gcm");
    for len in [100usize, 1200] {
        let pkt = rtp_packet(1, 90_000, 0x1234, len);
        let mut tx = SrtpContext::new(&p, [7; 32], [3; 12], true);
        let mut rx = SrtpContext::new(&p, [7; 32], [3; 12], false);
        let mut out = vec![0u8; 2048];
        let mut back = vec![0u8; 2048];
        let n = tx.protect(&pkt, &mut out).unwrap_or(0);
        let protected = out[..n].to_vec();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("protect", len), &pkt, |b, pkt| {
            b.iter(|| tx.protect(black_box(pkt), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("unprotect", len), &protected, |b, s| {
            b.iter(|| rx.unprotect(black_box(s), &mut back))
        });
    }
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    let mut pkt = rtp_packet(1, 90_000, 0x1234, 1200);
    let rw = Rewrite {
        ssrc: 0xdead_beef,
        seq_offset: 17,
        ts_offset: 3000,
        pt: 96,
    };
    c.bench_function("rtp_header_rewrite", |b| {
        b.iter(|| rw.apply(black_box(&mut pkt[..])))
    });
}

fn fanout(c: &mut Criterion) {
    let p = provider();
    let pkt = rtp_packet(1, 90_000, 0x1234, 1200);
    let mut tx = SrtpContext::new(&p, [1; 32], [2; 12], true);
    let mut buf = vec![0u8; 2048];
    let n = tx.protect(&pkt, &mut buf).unwrap_or(0);
    let incoming = buf[..n].to_vec();
    let mut g = c.benchmark_group("fanout_1200B");
    for m in [1usize, 10, 50] {
        let mut rx = SrtpContext::new(&p, [1; 32], [2; 12], false);
        let mut subs: Vec<(SrtpContext, Rewrite)> = (0..m)
            .map(|i| {
                let k = i as u8 + 10;
                (
                    SrtpContext::new(&p, [k; 32], [k; 12], true),
                    Rewrite {
                        ssrc: i as u32,
                        seq_offset: i as u16,
                        ts_offset: 0,
                        pt: 96,
                    },
                )
            })
            .collect();
        let mut plain = vec![0u8; 2048];
        let mut work = vec![0u8; 2048];
        let mut out = vec![0u8; 2048];
        g.throughput(Throughput::Elements(m as u64));
        g.bench_function(BenchmarkId::from_parameter(m), |b| {
            b.iter(|| {
                let len = rx.unprotect(black_box(&incoming), &mut plain).unwrap_or(0);
                for (ctx, rw) in &mut subs {
                    work[..len].copy_from_slice(&plain[..len]);
                    rw.apply(&mut work[..len]);
                    black_box(ctx.protect(&work[..len], &mut out));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, srtp, rewrite, fanout);
criterion_main!(benches);
