//! One optimizer step, queued on the device without the host waiting for it.
//!
//! A step is: every micro-batch's forward, loss and backward into the gradients (accumulating),
//! the gradients summed over the data-parallel ranks, then the gradient norm, clipping, the
//! non-finite check and the fused AdamW update, all on the device ([`eager_step`]). The loss and
//! the norm come back as a [`Pending`]: read them after the *next* step is queued (the loop does),
//! so the GPU never idles while the host logs.
//!
//! On CUDA the step is also **captured as CUDA graphs** ([`Graphs`], `cuda_graphs = true`, the
//! default): per distinct configuration of the step (active layers, trainable set, batch shape,
//! loss), its first step runs eagerly on the capture stream (the warm-up), its second captures a
//! *micro-step* graph (forward, loss, backward accumulating into fixed gradient buffers, the loss
//! summed into a fixed tensor) and an *optimizer* graph (norm, clipping, non-finite check, fused
//! AdamW reading the learning rate and step counts from device tensors, then the buffers zeroed for
//! the next step), sharing one memory pool; from then on the host copies each micro-batch into a
//! fixed input buffer and replays, one launch per graph instead of hundreds of kernels. What cannot
//! be captured falls back to the eager step for the rest of the run, with a one-line reason.
//!
//! On the CPU every step is eager and its values are read at once (the CPU has already computed
//! them), so nothing about a CPU run changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::Context;
use cost_model::flops::Trainable;
use run_dir::{failpoint, TrainConfig};
use tch::{Device, Kind, Tensor};

use crate::device::cuda::{self, CudaApi, Event, Graph, GraphPool};
use crate::device::native;
use crate::engine::loss::{self, MicroStep};
use crate::engine::model::Gpt;
use crate::engine::optim::{AdamW, Lr, StepValues};
use crate::world::World;

/// What one step trains on.
pub struct StepInput {
    /// The step's number (1-based), for the failpoint between the backward and the update.
    pub step: u64,
    pub micro: MicroStep,
    /// What trains (the graphs are per trainable set).
    pub trainable: Trainable,
    /// This rank's micro-batches (input ids, targets), on the device.
    pub batches: Vec<(Tensor, Tensor)>,
    pub lr: f64,
    pub grad_clip: Option<f64>,
}

/// On CUDA, where a step's two values land: pinned host memory, and the event recorded after
/// the copy into it.
type HostSlot = (Tensor, Event);

/// Things handed out and given back for reuse, allocated only when none is free: the loop reads
/// a step's values after queueing the next, so two host slots serve a whole run instead of a
/// pinned allocation and an event every step.
struct Reuse<T>(Rc<RefCell<Vec<T>>>);

impl<T> Reuse<T> {
    fn new() -> Reuse<T> {
        Reuse(Rc::new(RefCell::new(Vec::new())))
    }

    /// A free one, or a new one from `make`.
    fn take(&self, make: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        match self.0.borrow_mut().pop() {
            Some(free) => Ok(free),
            None => make(),
        }
    }

    /// Give `item` back (once nothing uses it any more).
    fn give_back(&self, item: T) {
        self.0.borrow_mut().push(item);
    }

    fn handle(&self) -> Reuse<T> {
        Reuse(Rc::clone(&self.0))
    }
}

/// A step's loss and gradient norm, still on the device, and how to read them.
pub struct Pending {
    values: StepValues,
    /// On CUDA: the two values copied (without waiting) into a host slot, and where the slot goes
    /// back once read.
    host: Option<(HostSlot, Reuse<HostSlot>)>,
}

impl Pending {
    /// `(loss, grad_norm)` on the host. On CUDA this waits for this step alone (the copy's event),
    /// not for the steps queued after it.
    pub fn read(self) -> anyhow::Result<(f64, f64)> {
        match self.host {
            None => Ok(self.values.read()),
            Some(((host, event), slots)) => {
                event.synchronize()?;
                let values = (host.double_value(&[0]), host.double_value(&[1]));
                // The copy is done: the slot may take the next step's values.
                slots.give_back((host, event));
                Ok(values)
            }
        }
    }
}

/// How the loop's steps run: eagerly or as CUDA graphs, and how their values come back.
pub struct Stepper {
    device: Device,
    /// The CUDA plugin, when it loaded (CUDA only): events for reading values without a sync.
    cuda: Option<&'static CudaApi>,
    /// Present while steps run as CUDA graphs.
    graphs: Option<Graphs>,
    /// Why the steps run eagerly on CUDA (said once, when the first step runs).
    pub eager_reason: Option<String>,
    /// The host slots values are read through on CUDA.
    host_slots: Reuse<HostSlot>,
}

impl Stepper {
    /// The stepper for `config` on `device`: CUDA graphs on CUDA when `config.cuda_graphs` and
    /// the CUDA plugin loads; eager otherwise (with the reason).
    pub fn new(config: &TrainConfig, device: Device) -> anyhow::Result<Stepper> {
        let Device::Cuda(index) = device else {
            return Ok(Stepper { device, cuda: None, graphs: None, eager_reason: None, host_slots: Reuse::new() });
        };
        let api = match cuda::api() {
            Ok(api) => api,
            Err(e) => {
                let reason = format!("the CUDA plugin is missing ({e}): steps run eagerly, their loss read every step");
                let host_slots = Reuse::new();
                return Ok(Stepper { device, cuda: None, graphs: None, eager_reason: Some(reason), host_slots });
            }
        };
        api.init(index)?;
        let (graphs, eager_reason) = match config.cuda_graphs {
            true => (Some(Graphs::new(api, index)?), None),
            false => (None, Some("cuda_graphs = false: steps run eagerly".to_string())),
        };
        Ok(Stepper { device, cuda: Some(api), graphs, eager_reason, host_slots: Reuse::new() })
    }

    /// True when steps run as CUDA graphs (so far: a failed capture turns them off).
    pub fn graphs_on(&self) -> bool {
        self.graphs.is_some()
    }

    /// Queue one step: gradients, the ranks' sum, clipping and the update. The host does not wait
    /// for the device; read the values with [`Pending::read`].
    pub fn step(
        &mut self,
        model: &Gpt,
        optimizer: &mut AdamW,
        world: &World,
        input: &StepInput,
    ) -> anyhow::Result<Pending> {
        let values = match self.graphs.as_mut().map(|g| g.step(model, optimizer, world, input)) {
            Some(Ok(values)) => values,
            Some(Err(e)) => {
                // The step did not happen (a capture runs nothing): run it eagerly, and every later one.
                eprintln!("warning: {}", self.fall_back(input.step, &e));
                eager_step(model, optimizer, world, input, Lr::Value(input.lr), Gradients::Fresh)?
            }
            None => eager_step(model, optimizer, world, input, Lr::Value(input.lr), Gradients::Fresh)?,
        };
        self.pending(values)
    }

    /// Turn the graphs off after `error` at `step` (their memory is freed with them); the line
    /// that says so.
    fn fall_back(&mut self, step: u64, error: &anyhow::Error) -> String {
        self.graphs = None;
        let first = format!("{error:#}");
        let reason = format!("CUDA graphs off from step {step}: {}", first.lines().next().unwrap_or_default());
        self.eager_reason = Some(reason.clone());
        format!("{reason}; this and every later step runs eagerly")
    }

    /// The step's values, on their way to the host.
    fn pending(&self, values: StepValues) -> anyhow::Result<Pending> {
        let (Some(api), Device::Cuda(index)) = (self.cuda, self.device) else {
            return Ok(Pending { values, host: None });
        };
        let both = Tensor::stack(&[values.loss.to_kind(Kind::Float), values.grad_norm.to_kind(Kind::Float)], 0)
            .to_kind(Kind::Double);
        let (host, event) = self.host_slots.take(|| {
            let pinned = native::pin_memory(&Tensor::zeros([2], (Kind::Double, Device::Cpu)))?;
            Ok((pinned, api.event()?))
        })?;
        native::copy_(&host, &both, true)?;
        event.record(index)?;
        Ok(Pending { values, host: Some(((host, event), self.host_slots.handle())) })
    }
}

/// What happens to the gradients before a step's backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gradients {
    /// Set to `None`: the backward writes fresh ones (`zero_grad(set_to_none=True)`).
    Fresh,
    /// Zeroed where they are: CUDA graphs replay into these very buffers, which must never be
    /// freed while the graphs live.
    InPlace,
}

/// One step, eagerly: the gradients reset (`gradients`), each micro-batch's forward and backward,
/// the loss summed over the micro-batches and the ranks, then clipping and the update at `lr`
/// (see [`AdamW::clipped_step`]).
pub fn eager_step(
    model: &Gpt,
    optimizer: &mut AdamW,
    world: &World,
    input: &StepInput,
    lr: Lr,
    gradients: Gradients,
) -> anyhow::Result<StepValues> {
    match gradients {
        Gradients::Fresh => optimizer.zero_grad()?,
        Gradients::InPlace => optimizer.zero_grad_buffers()?,
    }
    let device = input.batches.first().map_or(Device::Cpu, |(x, _)| x.device());
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    for (x, y) in &input.batches {
        let loss = loss::forward_backward(model, x, y, &input.micro)?;
        loss_sum += loss.to_kind(Kind::Float) * input.micro.grad_scale;
    }
    // The ranks' gradients and losses summed: one all-reduce, before clipping and the non-finite
    // check, so every rank makes the same update.
    world.sum_step(|| optimizer.gradients(), &loss_sum)?;
    failpoint::hit("step", input.step);
    // Queued without a host sync: a non-finite loss or norm makes the device skip the update.
    Ok(optimizer.clipped_step(&loss_sum, lr, input.grad_clip)?)
}

/// What makes two steps replay the same graphs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GraphKey {
    trainable: (u32, u32, bool),
    /// Rows and columns of a micro-batch.
    batch: (i64, i64),
    /// The gradient scale (1 / micro-batches per step), as bits.
    grad_scale: u64,
    autocast: bool,
    kernel: run_dir::config::LossKernel,
    vocab: usize,
    grad_clip: Option<u64>,
}

impl GraphKey {
    fn of(input: &StepInput) -> anyhow::Result<GraphKey> {
        let (x, _) = input.batches.first().context("a step without micro-batches")?;
        let (rows, columns) = x.size2()?;
        let t = input.trainable;
        Ok(GraphKey {
            trainable: (t.active_layers, t.first_trainable, t.embeddings),
            batch: (rows, columns),
            grad_scale: input.micro.grad_scale.to_bits(),
            autocast: input.micro.autocast,
            kernel: input.micro.kernel,
            vocab: input.micro.vocab,
            grad_clip: input.grad_clip.map(f64::to_bits),
        })
    }
}

/// The graphs of one configuration and the fixed tensors they read and write.
struct GraphSet {
    micro_step: Graph,
    optimizer: Graph,
    /// Where each micro-batch is copied before the micro-step replays.
    x: Tensor,
    y: Tensor,
    /// The step's loss, summed over its micro-batches by the micro-step graph.
    loss_sum: Tensor,
    /// The loss and the gradient norm the optimizer graph leaves for the host.
    loss_out: Tensor,
    norm_out: Tensor,
}

enum Slot {
    /// Its first step ran eagerly on the capture stream: the next one captures.
    WarmedUp,
    Ready(Box<GraphSet>),
}

/// What a configuration's next step does with its graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Its first step: eagerly, on the capture stream.
    WarmUp,
    /// Its second: capture both graphs (which runs nothing), then replay them.
    CaptureAndReplay,
    /// Every later one.
    Replay,
}

impl Action {
    fn for_slot(slot: Option<&Slot>) -> Action {
        match slot {
            None => Action::WarmUp,
            Some(Slot::WarmedUp) => Action::CaptureAndReplay,
            Some(Slot::Ready(_)) => Action::Replay,
        }
    }
}

/// Every configuration's graphs, one memory pool, and the device's learning rate.
struct Graphs {
    api: &'static CudaApi,
    device: usize,
    pool: GraphPool,
    /// The learning rate the optimizer graphs read (0-d float32 on the device).
    lr: Tensor,
    slots: HashMap<GraphKey, Slot>,
}

impl Graphs {
    fn new(api: &'static CudaApi, device: usize) -> anyhow::Result<Graphs> {
        let lr = Tensor::zeros([], (Kind::Float, Device::Cuda(device)));
        Ok(Graphs { api, device, pool: api.pool()?, lr, slots: HashMap::new() })
    }

    /// One step of `input`'s configuration: warm-up, capture then replay, or replay.
    fn step(
        &mut self,
        model: &Gpt,
        optimizer: &mut AdamW,
        world: &World,
        input: &StepInput,
    ) -> anyhow::Result<StepValues> {
        let key = GraphKey::of(input)?;
        match Action::for_slot(self.slots.get(&key)) {
            Action::WarmUp => {
                // Warm-up: the step itself, eagerly, on the stream the capture will use (PyTorch's
                // rule: no lazy initialisation, and no autograd leaf recorded on another stream).
                let values = self.api.on_side_stream(self.device, || {
                    eager_step(model, optimizer, world, input, Lr::Value(input.lr), Gradients::InPlace)
                })?;
                self.slots.insert(key, Slot::WarmedUp);
                Ok(values)
            }
            Action::CaptureAndReplay => {
                let set = self.capture(model, optimizer, input)?;
                self.slots.insert(key.clone(), Slot::Ready(Box::new(set)));
                self.replay(&key, optimizer, world, input)
            }
            Action::Replay => self.replay(&key, optimizer, world, input),
        }
    }

    /// Capture `input`'s configuration: the micro-step graph and the optimizer graph. Nothing runs.
    fn capture(&mut self, model: &Gpt, optimizer: &mut AdamW, input: &StepInput) -> anyhow::Result<GraphSet> {
        let (x0, y0) = input.batches.first().context("a step without micro-batches")?;
        let device = Device::Cuda(self.device);
        let zero = || Tensor::zeros([], (Kind::Float, device));
        // Fixed tensors, allocated outside the captures: the graphs read and write them in place.
        let (x, y) = (x0.zeros_like(), y0.zeros_like());
        let (loss_sum, loss_out, norm_out) = (zero(), zero(), zero());
        optimizer.zero_grad_buffers()?;
        let (api, pool) = (self.api, self.pool);
        let mut micro_step = api.graph()?;
        let mut optimizer_graph = api.graph()?;
        let (lr, grad_clip, micro) = (&self.lr, input.grad_clip, input.micro);
        api.on_side_stream(self.device, || {
            micro_step.capture(pool, || {
                let loss = loss::forward_backward(model, &x, &y, &micro)?;
                let mut sum = loss_sum.shallow_clone();
                sum += loss.to_kind(Kind::Float) * micro.grad_scale;
                Ok(())
            })?;
            optimizer_graph.capture(pool, || {
                let values = optimizer.clipped_step(&loss_sum, Lr::Device(lr), grad_clip)?;
                tch::no_grad(|| -> anyhow::Result<()> {
                    native::copy_(&loss_out, &values.loss, true)?;
                    native::copy_(&norm_out, &values.grad_norm.to_kind(Kind::Float), true)?;
                    // Ready for the next step: its micro-steps accumulate from zero.
                    native::zero_(&optimizer.gradients())?;
                    let _ = loss_sum.shallow_clone().zero_();
                    Ok(())
                })
            })
        })?;
        Ok(GraphSet { micro_step, optimizer: optimizer_graph, x, y, loss_sum, loss_out, norm_out })
    }

    /// Run one step of a captured configuration: each micro-batch copied in and the micro-step
    /// replayed, the ranks' sum (not captured), the learning rate written, the optimizer replayed.
    fn replay(
        &self,
        key: &GraphKey,
        optimizer: &mut AdamW,
        world: &World,
        input: &StepInput,
    ) -> anyhow::Result<StepValues> {
        let Some(Slot::Ready(set)) = self.slots.get(key) else { anyhow::bail!("no graphs captured for {key:?}") };
        for (x, y) in &input.batches {
            native::copy_(&set.x, x, true)?;
            native::copy_(&set.y, y, true)?;
            set.micro_step.replay()?;
        }
        world.sum_step(|| optimizer.gradients(), &set.loss_sum)?;
        failpoint::hit("step", input.step);
        let _ = tch::no_grad(|| self.lr.shallow_clone().fill_(input.lr));
        set.optimizer.replay()?;
        Ok(StepValues { loss: set.loss_out.shallow_clone(), grad_norm: set.norm_out.shallow_clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_dir::config::{GptShape, LossKernel};
    use tch::nn::VarStore;

    fn tiny() -> (VarStore, Gpt, AdamW) {
        let config = GptShape { layers: 2, heads: 2, d_model: 8, context: 8, vocab: 64 };
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let model = Gpt::new(&vs, config);
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let optimizer = AdamW::new(params, run_dir::config::AdamWConfig::default());
        (vs, model, optimizer)
    }

    fn input(step: u64) -> StepInput {
        let batch = || {
            let x = Tensor::randint(50, [2, 8], (Kind::Int64, Device::Cpu));
            (x.shallow_clone(), x.roll([-1], [1]))
        };
        StepInput {
            step,
            micro: MicroStep {
                active_layers: 2,
                autocast: false,
                grad_scale: 0.5,
                kernel: LossKernel::CrossEntropy,
                vocab: 50,
            },
            trainable: Trainable::all(2),
            batches: vec![batch(), batch()],
            lr: 1e-3,
            grad_clip: Some(1.0),
        }
    }

    #[test]
    fn on_the_cpu_steps_run_eagerly_and_read_at_once() {
        let config = TrainConfig::preset("tiny").unwrap();
        let mut stepper = Stepper::new(&config, Device::Cpu).unwrap();
        assert!(!stepper.graphs_on());
        assert_eq!(stepper.eager_reason, None, "eager is simply how the CPU runs");
        let (_vs, model, mut optimizer) = tiny();
        let world = World::single();
        let (loss, norm) = stepper.step(&model, &mut optimizer, &world, &input(1)).unwrap().read().unwrap();
        assert!(loss.is_finite() && norm > 0.0);
    }

    #[test]
    fn read_one_step_late_two_host_slots_serve_every_step() {
        // As the loop does on CUDA: queue step n + 1, then read step n.
        let slots = Reuse::new();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Ok(made.get())
        };
        let mut previous = slots.take(make).unwrap();
        for _ in 0..10 {
            let next = slots.take(make).unwrap();
            slots.give_back(previous);
            previous = next;
        }
        assert_eq!(made.get(), 2, "two slots allocated for eleven steps");
    }

    #[test]
    fn each_configuration_warms_up_then_captures_then_replays() {
        assert_eq!(Action::for_slot(None), Action::WarmUp);
        assert_eq!(Action::for_slot(Some(&Slot::WarmedUp)), Action::CaptureAndReplay);
    }

    #[test]
    fn a_failed_capture_turns_the_graphs_off_with_one_line() {
        let config = TrainConfig::preset("tiny").unwrap();
        let mut stepper = Stepper::new(&config, Device::Cpu).unwrap();
        let error = anyhow::anyhow!("operation not permitted when stream is capturing\nmore detail");
        let said = stepper.fall_back(12, &error);
        assert_eq!(said, "CUDA graphs off from step 12: operation not permitted when stream is capturing; this and every later step runs eagerly");
        assert!(!stepper.graphs_on());
        assert_eq!(
            stepper.eager_reason.as_deref(),
            Some("CUDA graphs off from step 12: operation not permitted when stream is capturing")
        );
    }

    #[test]
    fn graph_keys_tell_configurations_apart() {
        let a = input(1);
        let mut b = input(2);
        assert_eq!(GraphKey::of(&a).unwrap(), GraphKey::of(&b).unwrap(), "the step number is not part of it");
        b.trainable = Trainable { active_layers: 2, first_trainable: 1, embeddings: false };
        assert_ne!(GraphKey::of(&a).unwrap(), GraphKey::of(&b).unwrap());
        let mut c = input(1);
        c.micro.grad_scale = 0.25;
        assert_ne!(GraphKey::of(&a).unwrap(), GraphKey::of(&c).unwrap());
        let mut d = input(1);
        d.batches = vec![(
            Tensor::zeros([4, 4], (Kind::Int64, Device::Cpu)),
            Tensor::zeros([4, 4], (Kind::Int64, Device::Cpu)),
        )];
        assert_ne!(GraphKey::of(&a).unwrap(), GraphKey::of(&d).unwrap());
    }
}
