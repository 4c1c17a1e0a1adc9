//! Data compiled into the binary, so every command works with no files and no downloads.
//! Provenance and license: `assets/fashion-mnist/README.md`.

/// The names `--data` accepts for embedded data sets.
pub const EMBEDDED_NAMES: &[&str] = &["fashion-mnist"];

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The gzip IDX files of the embedded Fashion-MNIST subset: 1,000 training and 200 test images
/// per class.
pub struct EmbeddedIdx {
    pub train_images: &'static [u8],
    pub train_labels: &'static [u8],
    pub test_images: &'static [u8],
    pub test_labels: &'static [u8],
}

pub const FASHION_MNIST_SUBSET: EmbeddedIdx = EmbeddedIdx {
    train_images: include_bytes!("../assets/fashion-mnist/train-images-idx3-ubyte.gz"),
    train_labels: include_bytes!("../assets/fashion-mnist/train-labels-idx1-ubyte.gz"),
    test_images: include_bytes!("../assets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
    test_labels: include_bytes!("../assets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
};
