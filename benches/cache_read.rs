//! Cache read throughput: how fast training gets its vectors out of the embedding cache.
//! Writes 50,000 rows × 384 f32 (77 MB) in 2,048-row chunks, then times opening the entry
//! (which maps and checksums every chunk) and gathering every row into one array, several times.
//! The files are in the page cache (just written), which is the case for a repeated training run.
//!
//!     cargo bench --bench cache_read -- [OUT.md]

use std::time::Instant;

use frostline::embedder::{text_key, Cache, CacheKey};

fn main() {
    let out = std::env::args().skip(1).find(|a| a.ends_with(".md"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (rows, dim) = (50_000usize, 384usize);
    let key = CacheKey {
        format_version: 1,
        onnx_sha256: "bench".into(),
        tokenizer_sha256: "bench".into(),
        max_length: 256,
        pooling: "mean+l2".into(),
        normalize: true,
        split_layer: None,
        content: "sentence".into(),
        dtype: "f32".into(),
        numeric: "fp32".into(),
        dim,
    };
    let keys: Vec<_> = (0..rows)
        .map(|i| text_key(&format!("sentence number {i}")))
        .collect();
    {
        let mut cache = Cache::open(dir.path(), key.clone()).expect("open");
        let mut w = cache.writer(2048);
        let v: Vec<f32> = (0..dim).map(|j| j as f32 / dim as f32).collect();
        for k in &keys {
            if let Some(p) = w.push(*k, &v).expect("push") {
                cache.commit(&p).expect("commit");
            }
        }
        if let Some(p) = w.flush().expect("flush") {
            cache.commit(&p).expect("commit");
        }
    }
    let bytes = (rows * dim * 4) as f64;
    let mut open_s = Vec::new();
    let mut gather_s = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let cache = Cache::open(dir.path(), key.clone()).expect("open");
        let t1 = Instant::now();
        let x = cache.gather(&keys).expect("gather");
        let t2 = Instant::now();
        assert_eq!(x.dim(), (rows, dim));
        open_s.push((t1 - t0).as_secs_f64());
        gather_s.push((t2 - t1).as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, g) = (med(&mut open_s), med(&mut gather_s));
    let report = format!(
        "# Cache read: {rows} rows × {dim} f32 ({:.0} MB), median of 5\n\n| step | seconds | GB/s |\n|---|---:|---:|\n\
         | open (map + XXH3 check of every chunk) | {o:.4} | {:.2} |\n| gather every row into one array | {g:.4} | {:.2} |\n\
         | open + gather | {:.4} | {:.2} |\n",
        bytes / 1e6,
        bytes / o / 1e9,
        bytes / g / 1e9,
        o + g,
        bytes / (o + g) / 1e9
    );
    print!("{report}");
    if let Some(path) = out {
        std::fs::write(path, report).expect("write report");
    }
}
