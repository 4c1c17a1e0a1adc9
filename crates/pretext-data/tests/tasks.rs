//! Properties of the pretext tasks over random images and sizes, and their configuration errors.

use std::collections::HashSet;
use std::sync::OnceLock;

use proptest::prelude::*;

use pretext_data::pixels::{Rect, crop, rotate_quarter_turns};
use pretext_data::tasks::{
    Corruption, DenoiseConfig, JigsawConfig, MaskingConfig, PermutationSet, RotationConfig,
    RotationMode, TaskConfig, ViewsConfig, sample_seed,
};
use pretext_data::{ImageSet, ImageShape, Normalization, PretextTask, Samples, TaskKind};

/// Random images of `shape` and per-image seeds.
fn images(shape: ImageShape, n: usize) -> impl Strategy<Value = (Vec<u8>, Vec<u64>)> {
    (
        proptest::collection::vec(any::<u8>(), shape.len() * n),
        proptest::collection::vec(any::<u64>(), n),
    )
}

fn samples<'a>(
    shape: ImageShape,
    pixels: &'a [u8],
    seeds: &[u64],
    norm: &'a Normalization,
) -> Samples<'a> {
    Samples {
        images: pixels.chunks_exact(shape.len()).collect(),
        labels: None,
        seeds: seeds.to_vec(),
        norm,
    }
}

fn norm_for(channels: usize) -> Normalization {
    Normalization {
        mean: vec![0.3; channels],
        std: vec![0.2; channels],
    }
}

fn normalized(shape: ImageShape, bytes: &[u8], norm: &Normalization) -> Vec<f32> {
    let mut v = Vec::new();
    norm.extend_normalized(bytes, shape, &mut v);
    v
}

fn square_shape() -> impl Strategy<Value = ImageShape> {
    (1usize..=3, 1usize..=12).prop_map(|(c, n)| ImageShape::new(c, n, n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn four_quarter_turns_compose_to_the_identity(
        (shape, (pixels, _)) in square_shape().prop_flat_map(|s| (Just(s), images(s, 1)))
    ) {
        let image: Vec<f32> = pixels.iter().map(|&b| b as f32).collect();
        let mut a = image.clone();
        let mut b = vec![0.0; image.len()];
        for _ in 0..4 {
            rotate_quarter_turns(&a, shape, 1, &mut b);
            std::mem::swap(&mut a, &mut b);
        }
        prop_assert_eq!(&a, &image);
        // k quarter turns equal k single ones, for every k.
        for k in 0..4u8 {
            let mut once = vec![0.0; image.len()];
            rotate_quarter_turns(&image, shape, k, &mut once);
            let mut undo = vec![0.0; image.len()];
            rotate_quarter_turns(&once, shape, (4 - k) % 4, &mut undo);
            prop_assert_eq!(&undo, &image);
        }
    }

    #[test]
    fn rotation_batches_hold_every_rotation_with_its_label(
        (shape, (pixels, seeds)) in square_shape().prop_flat_map(|s| (Just(s), images(s, 3)))
    ) {
        let norm = norm_for(shape.channels);
        let task = RotationConfig { mode: RotationMode::AllFour }.build(shape).unwrap();
        let batch = task.make_batch(&samples(shape, &pixels, &seeds, &norm));
        prop_assert_eq!(batch.len(), 12);
        for (i, bytes) in pixels.chunks_exact(shape.len()).enumerate() {
            let clean = normalized(shape, bytes, &norm);
            for r in 0..4 {
                let e = i * 4 + r;
                prop_assert_eq!(batch.targets[e], r as u32);
                let mut back = vec![0.0; clean.len()];
                rotate_quarter_turns(batch.image(e), shape, (4 - r as u8) % 4, &mut back);
                prop_assert_eq!(&back, &clean);
            }
        }
        let one = RotationConfig { mode: RotationMode::RandomOne }.build(shape).unwrap();
        let batch = one.make_batch(&samples(shape, &pixels, &seeds, &norm));
        prop_assert_eq!(batch.len(), 3);
        prop_assert!(batch.targets.iter().all(|&t| t < 4));
    }

    #[test]
    fn jigsaw_tiles_reassemble_to_the_crop_under_the_inverse_permutation(
        cell in 1usize..=5,
        extra in 0usize..=3,
        channels in 1usize..=2,
        permutations in 2usize..=24,
        seeds in proptest::collection::vec(any::<u64>(), 2),
        pixel_seed in any::<u64>(),
    ) {
        let grid = 2;
        let side = grid * cell + extra;
        let shape = ImageShape::new(channels, side, side + 1);
        let pixels: Vec<u8> = (0..shape.len() * 2)
            .map(|i| (sample_seed(pixel_seed, 0, i as u64) >> 56) as u8)
            .collect();
        let norm = norm_for(channels);
        let config = JigsawConfig { grid, permutations, crop: None, jitter: 0 };
        let task = config.build(shape).unwrap();
        let rect = task.crop_rect();
        // The largest centred square whose side the grid divides.
        prop_assert_eq!(rect.height, side / grid * grid);
        let cell = rect.height / grid;
        let batch = task.make_batch(&samples(shape, &pixels, &seeds, &norm));
        let ts = task.tile_shape();
        for (i, bytes) in pixels.chunks_exact(shape.len()).enumerate() {
            let image = normalized(shape, bytes, &norm);
            let label = batch.targets[i] as usize;
            prop_assert!(label < permutations);
            let inverse = task.permutations().inverse(label);
            // Tile j of the crop sits at position inverse[j].
            for (j, &position) in inverse.iter().enumerate() {
                let tile = &batch.tiles[(i * 4 + position as usize) * ts.len()..][..ts.len()];
                let want_rect = Rect {
                    top: rect.top + (j / grid) * cell,
                    left: rect.left + (j % grid) * cell,
                    height: cell,
                    width: cell,
                };
                let mut want = vec![0.0; ts.len()];
                crop(&image, shape, want_rect, &mut want);
                prop_assert_eq!(tile, &want[..]);
            }
        }
    }

    #[test]
    fn masks_hide_exactly_the_promised_count_and_partition_the_patches(
        patch in 1usize..=4,
        grid_h in 1usize..=5,
        grid_w in 1usize..=5,
        channels in 1usize..=3,
        ratio in 0.05f32..0.95,
        normalize_targets in any::<bool>(),
        seeds in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let shape = ImageShape::new(channels, grid_h * patch, grid_w * patch);
        let n = grid_h * grid_w;
        let config = MaskingConfig { patch_size: patch, mask_ratio: ratio, normalize_targets };
        let masked = (ratio as f64 * n as f64).round() as usize;
        let Ok(task) = config.build(shape) else {
            prop_assert!(masked == 0 || masked == n);
            return Ok(());
        };
        prop_assert_eq!(task.num_masked(), masked);
        let pixels: Vec<u8> = (0..shape.len() * 3).map(|i| (i * 37 % 251) as u8).collect();
        let norm = norm_for(channels);
        let batch = task.make_batch(&samples(shape, &pixels, &seeds, &norm));
        let d = task.patch_dim();
        let v = n - masked;
        for (i, bytes) in pixels.chunks_exact(shape.len()).enumerate() {
            let vis = &batch.visible_indices[i * v..(i + 1) * v];
            let mas = &batch.masked_indices[i * masked..(i + 1) * masked];
            let all: HashSet<u32> = vis.iter().chain(mas).copied().collect();
            prop_assert_eq!(all.len(), n);
            prop_assert!(all.iter().all(|&p| (p as usize) < n));
            let mask = &batch.mask[i * n..(i + 1) * n];
            prop_assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), masked);
            prop_assert!(mas.iter().all(|&m| mask[m as usize] == 1.0));
            // Gathering the visible-then-masked sequence with `restore` gives patch order.
            let sequence: Vec<u32> = vis.iter().chain(mas).copied().collect();
            let restore = &batch.restore[i * n..(i + 1) * n];
            for p in 0..n {
                prop_assert_eq!(sequence[restore[p] as usize], p as u32);
            }

            let mut patches = Vec::new();
            task.patchify(&normalized(shape, bytes, &norm), &mut patches);
            prop_assert_eq!(task.unpatchify(&patches), normalized(shape, bytes, &norm));
            for (k, &p) in vis.iter().enumerate() {
                let got = &batch.visible[(i * v + k) * d..][..d];
                prop_assert_eq!(got, &patches[p as usize * d..][..d]);
            }
            let targets = &batch.targets[i * n * d..(i + 1) * n * d];
            if normalize_targets {
                for t in targets.chunks_exact(d) {
                    let mean = t.iter().sum::<f32>() / d as f32;
                    prop_assert!(mean.abs() < 1e-3);
                }
            } else {
                prop_assert_eq!(targets, &patches[..]);
            }
        }
    }

    #[test]
    fn views_differ_from_each_other_and_repeat_with_the_seed(
        side in 8usize..=20,
        channels in prop_oneof![Just(1usize), Just(3usize)],
        seed in any::<u64>(),
        pixel_seed in any::<u64>(),
    ) {
        let shape = ImageShape::new(channels, side, side);
        let pixels: Vec<u8> = (0..shape.len())
            .map(|i| (sample_seed(pixel_seed, 1, i as u64) >> 56) as u8)
            .collect();
        let norm = norm_for(channels);
        let task = ViewsConfig::default().build(shape).unwrap();
        let a = task.make_batch(&samples(shape, &pixels, &[seed], &norm));
        let b = task.make_batch(&samples(shape, &pixels, &[seed], &norm));
        prop_assert_eq!(&a, &b);
        prop_assert_ne!(&a.first, &a.second);
        prop_assert!(a.first.iter().chain(&a.second).all(|v| v.is_finite()));
        // Another seed draws other views. On an 8x8 image one other seed can draw the same
        // crop and flip and skip the jitter and blur (the saved regression case is one), so
        // the views of eight other seeds must not all repeat this one.
        let repeats = (1..=8u64)
            .filter(|k| task.make_batch(&samples(shape, &pixels, &[seed ^ k], &norm)).first == a.first)
            .count();
        prop_assert!(repeats < 8, "eight other seeds drew the same view");
    }

    #[test]
    fn denoise_targets_are_the_clean_images(
        (shape, (pixels, seeds)) in (1usize..=3, 2usize..=10, 2usize..=10)
            .prop_map(|(c, h, w)| ImageShape::new(c, h, w))
            .prop_flat_map(|s| (Just(s), images(s, 2))),
        corruption in prop_oneof![Just(Corruption::None), Just(Corruption::Noise), Just(Corruption::Square)],
    ) {
        let norm = norm_for(shape.channels);
        let task = DenoiseConfig { corruption, ..DenoiseConfig::default() }.build(shape).unwrap();
        let batch = task.make_batch(&samples(shape, &pixels, &seeds, &norm));
        let clean: Vec<f32> = pixels
            .chunks_exact(shape.len())
            .flat_map(|b| normalized(shape, b, &norm))
            .collect();
        prop_assert_eq!(&batch.targets, &clean);
        match corruption {
            Corruption::None => prop_assert_eq!(&batch.inputs, &clean),
            Corruption::Square => {
                // Only pixels set to the mean (0 once normalised) differ.
                for (x, y) in batch.inputs.iter().zip(&clean) {
                    prop_assert!(x == y || *x == 0.0);
                }
                prop_assert!(batch.inputs.contains(&0.0));
            }
            Corruption::Noise => prop_assert_ne!(&batch.inputs, &clean),
        }
    }
}

fn jigsaw_3x3() -> &'static PermutationSet {
    static SET: OnceLock<PermutationSet> = OnceLock::new();
    SET.get_or_init(|| PermutationSet::generate(3, 100).unwrap())
}

#[test]
fn jigsaw_permutations_are_distinct_with_the_promised_minimum_hamming_distance() {
    let set = jigsaw_3x3();
    assert_eq!(set.len(), 100);
    let distinct: HashSet<&Vec<u8>> = set.permutations.iter().collect();
    assert_eq!(distinct.len(), 100);
    let mut min = usize::MAX;
    for (i, a) in set.permutations.iter().enumerate() {
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..9).collect::<Vec<u8>>(),
            "not a permutation: {a:?}"
        );
        for b in &set.permutations[i + 1..] {
            min = min.min(a.iter().zip(b).filter(|(x, y)| x != y).count());
        }
    }
    assert_eq!(min, set.min_hamming);
    // Greedy max-min selection keeps 100 permutations of 9 tiles far apart.
    assert!(
        set.min_hamming >= 6,
        "min Hamming distance {}",
        set.min_hamming
    );
    // Deterministic, and it survives a round trip through JSON (it is saved with runs).
    assert_eq!(&PermutationSet::generate(3, 100).unwrap(), set);
    let json = serde_json::to_string(set).unwrap();
    assert_eq!(&serde_json::from_str::<PermutationSet>(&json).unwrap(), set);
}

fn err(result: Result<impl std::fmt::Debug, pretext_data::DataError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn bad_task_configs_are_clear_errors() {
    let s28 = ImageShape::new(1, 28, 28);
    for ratio in [0.0, 1.0, 1.5, -0.1, f32::NAN] {
        let e = err(MaskingConfig {
            mask_ratio: ratio,
            ..Default::default()
        }
        .build(s28));
        assert!(e.contains("mask_ratio"), "{e}");
    }
    let e = err(MaskingConfig {
        patch_size: 5,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("patch_size = 5"), "{e}");
    // 4 patches at 0.1 masks round(0.4) = 0 of them.
    let e = err(MaskingConfig {
        patch_size: 14,
        mask_ratio: 0.1,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("no masked patch"), "{e}");

    let e = err(JigsawConfig {
        crop: Some(28),
        ..Default::default()
    }
    .build(s28));
    assert!(
        e.contains("grid = 3 does not divide the crop side 28"),
        "{e}"
    );
    let e = err(JigsawConfig {
        grid: 2,
        permutations: 25,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("4! = 24"), "{e}");
    let e = err(JigsawConfig {
        grid: 1,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("grid = 1"), "{e}");
    let e = err(JigsawConfig {
        jitter: 9,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("jitter = 9"), "{e}");
    let e = err(JigsawConfig {
        crop: Some(30),
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("does not fit"), "{e}");

    let e = err(RotationConfig::default().build(ImageShape::new(1, 28, 32)));
    assert!(e.contains("28x32") && e.contains("square"), "{e}");

    let e = err(ViewsConfig {
        crop_scale: [0.5, 0.2],
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("crop_scale"), "{e}");
    let e = err(ViewsConfig {
        flip_prob: 2.0,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("flip_prob = 2"), "{e}");
    let e = err(ViewsConfig {
        size: Some([0, 8]),
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("size"), "{e}");

    let e = err(DenoiseConfig {
        corruption: Corruption::Square,
        square: 0.0,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("square = 0"), "{e}");
    let e = err(DenoiseConfig {
        noise_std: -1.0,
        ..Default::default()
    }
    .build(s28));
    assert!(e.contains("noise_std"), "{e}");

    // Zero-size images, for every task.
    let empty = ImageShape::new(1, 0, 0);
    for kind in TaskKind::ALL {
        let e = err(TaskConfig::default_for(kind).validate(empty));
        assert!(e.contains("no pixels"), "{kind}: {e}");
    }
    let e = err("rotate".parse::<TaskKind>());
    assert!(e.contains("unknown task 'rotate'"), "{e}");
}

#[test]
fn task_configs_read_from_toml_by_kind() {
    let config: TaskConfig =
        toml::from_str("kind = \"jigsaw\"\ngrid = 2\npermutations = 24\n").unwrap();
    assert_eq!(
        config,
        TaskConfig::Jigsaw(JigsawConfig {
            grid: 2,
            permutations: 24,
            ..Default::default()
        })
    );
    let config: TaskConfig = toml::from_str("kind = \"autoencoder\"").unwrap();
    assert_eq!(config.kind(), TaskKind::Autoencoder);
    let bad = toml::from_str::<TaskConfig>("kind = \"mae\"\nmask_ratoi = 0.5\n").unwrap_err();
    assert!(bad.to_string().contains("mask_ratoi"), "{bad}");
}

#[test]
fn every_task_runs_on_the_embedded_data() {
    let ds = pretext_data::DataSource::EmbeddedFashionMnist
        .load()
        .unwrap();
    let norm = ds.normalization();
    let set: &ImageSet = &ds.train;
    let idx = [0usize, 1, 2, 3];
    let s = Samples::of(set, &idx, &norm, 7, 0);
    for kind in TaskKind::ALL {
        TaskConfig::default_for(kind).validate(set.shape).unwrap();
    }
    assert_eq!(
        RotationConfig::default()
            .build(set.shape)
            .unwrap()
            .make_batch(&s)
            .len(),
        16
    );
    let jig = JigsawConfig::default()
        .build(set.shape)
        .unwrap()
        .make_batch(&s);
    assert_eq!(
        (jig.len(), jig.tiles_per_image, jig.tile_shape),
        (4, 9, ImageShape::new(1, 8, 8))
    );
    let mae = MaskingConfig::default()
        .build(set.shape)
        .unwrap()
        .make_batch(&s);
    assert_eq!(
        (mae.num_patches, mae.num_visible(), mae.num_masked()),
        (49, 12, 37)
    );
    assert_eq!(
        ViewsConfig::default()
            .build(set.shape)
            .unwrap()
            .make_batch(&s)
            .len(),
        4
    );
    assert_eq!(
        DenoiseConfig::default()
            .build(set.shape)
            .unwrap()
            .make_batch(&s)
            .len(),
        4
    );
}
