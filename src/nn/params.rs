//! Every trainable tensor lives in one store, named by path (`heads.intent.0.weight`) the way
//! safetensors files name them; layers hold ids into it.

use ndarray::{ArrayD, IxDyn};

use super::gemm::Kernel;

pub type ParamId = usize;

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub value: ArrayD<f32>,
    pub grad: ArrayD<f32>,
    /// Set for parameters outside the optimizer ([`ParamStore::train_only`]): backward passes
    /// skip their gradients.
    pub frozen: bool,
}

/// The parameters, and the kernel every product on them runs with (the job's precision on
/// this CPU, chosen once where the job is built).
#[derive(Debug, Clone)]
pub struct ParamStore {
    params: Vec<Param>,
    kernel: Kernel,
}

impl Default for ParamStore {
    /// An empty store whose products run in fp32 on the fastest kernel this CPU has.
    fn default() -> Self {
        Self::with_kernel(Kernel::best_fp32())
    }
}

impl ParamStore {
    pub fn with_kernel(kernel: Kernel) -> Self {
        Self {
            params: Vec::new(),
            kernel,
        }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Runs later products with `kernel` (e.g. a store loaded from a checkpoint, then trained
    /// or served at the job's precision).
    pub fn set_kernel(&mut self, kernel: Kernel) {
        self.kernel = kernel;
    }

    pub fn add(&mut self, name: impl Into<String>, value: ArrayD<f32>) -> ParamId {
        let grad = ArrayD::zeros(value.raw_dim());
        self.params.push(Param {
            name: name.into(),
            value,
            grad,
            frozen: false,
        });
        self.params.len() - 1
    }

    pub fn get(&self, id: ParamId) -> &Param {
        &self.params[id]
    }

    pub fn get_mut(&mut self, id: ParamId) -> &mut Param {
        &mut self.params[id]
    }

    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param)> {
        self.params.iter().enumerate()
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Ids of every parameter whose name starts with `prefix`.
    pub fn ids_with_prefix(&self, prefix: &str) -> Vec<ParamId> {
        self.iter()
            .filter(|(_, p)| p.name.starts_with(prefix))
            .map(|(i, _)| i)
            .collect()
    }

    /// Marks every parameter but `trainable` frozen, so backward passes compute only the
    /// gradients the optimizer will use.
    pub fn train_only(&mut self, trainable: &[ParamId]) {
        let keep: std::collections::HashSet<ParamId> = trainable.iter().copied().collect();
        for (i, p) in self.params.iter_mut().enumerate() {
            p.frozen = !keep.contains(&i);
        }
    }

    /// Whether `id` takes gradients (see [`ParamStore::train_only`]).
    pub fn trains(&self, id: ParamId) -> bool {
        !self.params[id].frozen
    }

    pub fn zero_grads(&mut self) {
        for p in &mut self.params {
            p.grad.fill(0.0);
        }
    }

    /// Number of scalars in the given parameters.
    pub fn count(&self, ids: &[ParamId]) -> usize {
        ids.iter().map(|&i| self.params[i].value.len()).sum()
    }

    /// Replaces a parameter's value, keeping its shape.
    pub fn set(&mut self, id: ParamId, value: ArrayD<f32>) {
        assert_eq!(
            self.params[id].value.shape(),
            value.shape(),
            "shape of {}",
            self.params[id].name
        );
        self.params[id].value = value;
    }
}

pub fn zeros(shape: &[usize]) -> ArrayD<f32> {
    ArrayD::zeros(IxDyn(shape))
}
