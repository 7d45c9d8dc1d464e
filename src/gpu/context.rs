//! Instance, adapter and device: picks the best adapter (or the one the user names), requests
//! the adapter's own limits, and wraps every object-creating or data-moving call so the
//! counters stay true.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::gpu::counters::{CounterCells, Counters};
use crate::ir::SubgroupShare;
use crate::ir::{DeviceCaps, KernelCall, Shader};
use crate::{Error, Result};

/// The outcome of a buffer mapping, delivered by its callback.
pub type MappingReceiver =
    std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>;

/// Which adapter to use: a backend, a name substring, or the best one available.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// A discrete or integrated GPU over a software one; native APIs over GL.
    #[default]
    Best,
    /// The best adapter of one backend.
    Backend(wgpu::Backend),
    /// The best adapter whose name contains this (case-insensitive).
    Name(String),
}

impl FromStr for AdapterChoice {
    type Err = std::convert::Infallible;

    /// `vulkan`, `metal`, `dx12`, `gl`, `auto`, or any other text as a name substring.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "" | "auto" | "best" => AdapterChoice::Best,
            "vulkan" | "vk" => AdapterChoice::Backend(wgpu::Backend::Vulkan),
            "metal" => AdapterChoice::Backend(wgpu::Backend::Metal),
            "dx12" | "d3d12" => AdapterChoice::Backend(wgpu::Backend::Dx12),
            "gl" | "opengl" | "gles" => AdapterChoice::Backend(wgpu::Backend::Gl),
            _ => AdapterChoice::Name(s.to_string()),
        })
    }
}

impl AdapterChoice {
    /// The choice in `STRIATE_ADAPTER`, or `Best`.
    pub fn from_env() -> Self {
        std::env::var("STRIATE_ADAPTER")
            .map(|s| s.parse().expect("parsing is infallible"))
            .unwrap_or_default()
    }
}

/// The device, its queue, the pipeline cache and the counters. Cheap to clone.
#[derive(Clone)]
pub struct GpuContext {
    inner: Arc<Inner>,
    /// Offer plans as on an adapter without subgroups ([`GpuContext::without_subgroups`]).
    no_subgroups: bool,
    /// Share subgroup values within blocks of 8 lanes even on 8-lane subgroups
    /// ([`GpuContext::with_subgroup_blocks`]).
    subgroup_blocks: bool,
    /// Forces whether the workgroup-tiled family is offered (`None`: by the adapter's type).
    workgroup_tiles: Option<bool>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    counters: CounterCells,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    /// On wgpu's GL backend, one turn at the device for every call that reaches the GL context
    /// (see [`GpuContext::turn`]); `None` on the other backends, which are free-threaded.
    serial: Option<Mutex<()>>,
}

impl fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuContext({})", self.describe())
    }
}

/// Higher is better: real GPUs before software ones, native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = u8::from(info.backend != wgpu::Backend::Gl);
    (device, backend)
}

/// Why striate does not take an adapter that wgpu lists, where it is a known limitation of
/// wgpu on that driver; `None` for adapters that work. `STRIATE_ALLOW_UNSUPPORTED_ADAPTERS=1`
/// tries them anyway (to check whether a newer wgpu or driver has fixed it).
fn known_problem(info: &wgpu::AdapterInfo) -> Option<&'static str> {
    const NVIDIA: u32 = 0x10de;
    let nvidia = info.vendor == NVIDIA || info.name.to_ascii_lowercase().contains("nvidia");
    (info.backend == wgpu::Backend::Gl && nvidia).then_some(GL_ON_NVIDIA)
}

const GL_ON_NVIDIA: &str = "wgpu's GL backend cannot open a device on NVIDIA's GL driver \
    (request_device fails with \"Parent device is lost\": seen on an H200 with driver 580, and \
    wgpu's own tests fail the same way on NVIDIA's Linux GL, gfx-rs/wgpu#7068); use the \
    card's Vulkan adapter (--adapter vulkan), or for GL Mesa's llvmpipe (apt-get install \
    libegl-mesa0 libgl1-mesa-dri, and __EGL_VENDOR_LIBRARY_FILENAMES=\
    /usr/share/glvnd/egl_vendor.d/50_mesa.json where NVIDIA's EGL would be chosen first)";

const NO_ADAPTER_HINT: &str = "install a GPU driver, or mesa-vulkan-drivers for a software Vulkan adapter (lavapipe): apt-get install mesa-vulkan-drivers libvulkan1";

impl GpuContext {
    /// Opens the adapter `choice` selects. Fails (never panics) when none is usable, naming the fix.
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        pollster::block_on(Self::new_async(choice))
    }

    /// Opens the adapter chosen by `STRIATE_ADAPTER` (default: the best one).
    pub fn from_env() -> Result<Self> {
        Self::new(&AdapterChoice::from_env())
    }

    async fn new_async(choice: &AdapterChoice) -> Result<Self> {
        // Native APIs first; GL only when asked for or when no native adapter is usable (probing
        // GL without a display also prints EGL noise).
        let tries = match choice {
            AdapterChoice::Backend(b) => vec![wgpu::Backends::from(*b)],
            _ => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
        };
        let allow_unsupported =
            std::env::var("STRIATE_ALLOW_UNSUPPORTED_ADAPTERS").is_ok_and(|v| v == "1");
        let mut names = Vec::new();
        // Why each adapter that matched the choice was not taken.
        let mut refused = Vec::new();
        for backends in tries {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            let adapters = instance.enumerate_adapters(backends).await;
            names.extend(adapters.iter().map(|a| describe_info(&a.get_info())));
            let mut candidates: Vec<wgpu::Adapter> = adapters
                .into_iter()
                .filter(|a| match choice {
                    AdapterChoice::Name(needle) => a
                        .get_info()
                        .name
                        .to_lowercase()
                        .contains(&needle.to_lowercase()),
                    _ => true,
                })
                .collect();
            candidates.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
            for adapter in candidates {
                let info = adapter.get_info();
                if let Some(problem) = known_problem(&info).filter(|_| !allow_unsupported) {
                    refused.push(format!("{}: {problem}", describe_info(&info)));
                    continue;
                }
                match Self::open(adapter).await {
                    Ok(gpu) => return Ok(gpu),
                    Err(e) => refused.push(e.to_string()),
                }
            }
        }
        Err(Error::NoAdapter(if !refused.is_empty() {
            format!("no usable GPU adapter: {}", refused.join("; "))
        } else if names.is_empty() {
            format!("no GPU adapter found; {NO_ADAPTER_HINT}")
        } else {
            match choice {
                AdapterChoice::Name(n) => {
                    format!(
                        "no adapter name contains {n:?}; available: {}",
                        names.join("; ")
                    )
                }
                AdapterChoice::Backend(b) => {
                    format!("no {b:?} adapter; available: {}", names.join("; "))
                }
                AdapterChoice::Best => {
                    unreachable!("every adapter of an unfiltered list is tried or refused")
                }
            }
        }))
    }

    async fn open(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Subgroup operations where the adapter has them: the texture GEMM shares its row
        // operand through subgroup broadcasts or shuffles (`kernels::SubgroupShare`).
        // Timestamp queries where the adapter has them: `Executable::profile` times each
        // dispatch on the device instead of syncing the host around it.
        let features =
            adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("striate"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(format!("{}: {e}", describe_info(&info))))?;
        let serial = (info.backend == wgpu::Backend::Gl).then(Mutex::default);
        Ok(GpuContext {
            no_subgroups: false,
            subgroup_blocks: false,
            workgroup_tiles: None,
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                counters: CounterCells::default(),
                modules: Mutex::default(),
                pipelines: Mutex::default(),
                serial,
            }),
        })
    }

    /// The same device, on which ops offer the plans they offer where an adapter has no
    /// subgroups (those run anywhere): tests check those variants on this device too.
    pub fn without_subgroups(&self) -> Self {
        GpuContext {
            no_subgroups: true,
            ..self.clone()
        }
    }

    /// What ops may assume when they offer plans.
    pub fn caps(&self) -> DeviceCaps {
        let info = &self.inner.info;
        DeviceCaps {
            subgroups: self.subgroup_share(),
            max_texture_dim: self.inner.limits.max_texture_dimension_2d,
            workgroup_tiles: self.workgroup_tiles.unwrap_or(!matches!(
                info.device_type,
                wgpu::DeviceType::Cpu | wgpu::DeviceType::Other
            )),
        }
    }

    /// How subgroup plans share values here: within the whole subgroup where it is exactly 8
    /// lanes wide, else within blocks of 8 lanes where every width the adapter may pick is a
    /// multiple of 8 ([`GpuContext::with_subgroup_blocks`] forces the blocks).
    fn subgroup_share(&self) -> Option<SubgroupShare> {
        let info = &self.inner.info;
        let has = !self.no_subgroups
            && self
                .inner
                .device
                .features()
                .contains(wgpu::Features::SUBGROUP);
        let (min, max) = (info.subgroup_min_size, info.subgroup_max_size);
        if !has || min < 8 || max > 128 || !min.is_power_of_two() || !max.is_power_of_two() {
            None
        } else if min == 8 && max == 8 && !self.subgroup_blocks {
            Some(SubgroupShare::Whole)
        } else {
            Some(SubgroupShare::Blocks)
        }
    }

    /// The same device, on which subgroup plans share values within blocks of 8 lanes (as on
    /// adapters whose subgroups are wider than 8) even where subgroups are exactly 8 wide:
    /// tests check the wide-subgroup kernels on lavapipe.
    pub fn with_subgroup_blocks(&self) -> Self {
        GpuContext {
            subgroup_blocks: true,
            ..self.clone()
        }
    }

    /// The same device, on which ops offer the workgroup-tiled kernels (`kernels::tiled`)
    /// whatever the adapter is: tests check those GPU-only variants on a CPU adapter too.
    pub fn with_workgroup_tiles(&self) -> Self {
        GpuContext {
            workgroup_tiles: Some(true),
            ..self.clone()
        }
    }

    /// Nanoseconds per timestamp tick, when the device has timestamp queries.
    pub fn timestamp_period(&self) -> Option<f64> {
        self.inner
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| f64::from(self.inner.queue.get_timestamp_period()))
    }

    /// Creates a 2D texture, counted.
    pub fn create_texture(
        &self,
        label: &str,
        width: u32,
        height: u32,
        format: wgpu::TextureFormat,
        usage: wgpu::TextureUsages,
    ) -> wgpu::Texture {
        CounterCells::bump(&self.inner.counters.textures_created, 1);
        let _turn = self.turn();
        self.inner.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage,
            view_formats: &[],
        })
    }

    /// "name (backend, device type)", e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        describe_info(&self.inner.info)
    }

    /// The adapter's details.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The device limits in force (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The wgpu device, for code that needs raw access.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The current counter values.
    pub fn counters(&self) -> Counters {
        self.inner.counters.snapshot()
    }

    /// Creates a buffer (counted).
    pub fn create_buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        CounterCells::bump(&self.inner.counters.buffers_created, 1);
        let _turn = self.turn();
        // wgpu rejects zero-sized bindings; 4 bytes is the smallest tensor.
        self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        })
    }

    /// Creates a bind group (counted).
    pub fn create_bind_group(
        &self,
        label: &str,
        layout: &wgpu::BindGroupLayout,
        entries: &[wgpu::BindGroupEntry<'_>],
    ) -> wgpu::BindGroup {
        CounterCells::bump(&self.inner.counters.bind_groups_created, 1);
        let _turn = self.turn();
        self.inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout,
                entries,
            })
    }

    /// Writes bytes into a buffer through the queue (counted as upload).
    pub fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        CounterCells::bump(&self.inner.counters.bytes_uploaded, bytes.len() as u64);
        let _turn = self.turn();
        self.inner.queue.write_buffer(buffer, offset, bytes);
    }

    /// A new command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.inner
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Submits one command buffer (counted).
    pub fn submit(&self, encoder: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
        CounterCells::bump(&self.inner.counters.submissions, 1);
        let commands = encoder.finish();
        let _turn = self.turn();
        self.inner.queue.submit([commands])
    }

    /// Blocks until one earlier submission is done (counted as backpressure, not a readback).
    pub fn wait_for(&self, submission: wgpu::SubmissionIndex) -> Result<()> {
        CounterCells::bump(&self.inner.counters.backpressure_waits, 1);
        self.wait_until(Some(submission))
    }

    /// Blocks until all submitted work is done (counted).
    pub fn wait(&self) -> Result<()> {
        CounterCells::bump(&self.inner.counters.blocking_waits, 1);
        self.wait_until(None)
    }

    /// Waits for `submission` (or all work), processing finished work and its callbacks. On
    /// GL the wait goes in short turns: wgpu holds the GL context for the whole of a wait and
    /// caps each at 2.1 s (then reports a timeout), so one long wait would both fail and shut
    /// every other thread out of the device.
    fn wait_until(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let timeout = self
            .inner
            .serial
            .as_ref()
            .map(|_| std::time::Duration::from_millis(10));
        loop {
            let res = {
                let _turn = self.turn();
                self.inner.device.poll(wgpu::PollType::Wait {
                    submission_index: submission.clone(),
                    timeout,
                })
            };
            match res {
                Ok(_) => return Ok(()),
                Err(wgpu::PollError::Timeout) => continue,
                Err(e) => return Err(Error::Device(e.to_string())),
            }
        }
    }

    /// Maps a `MAP_READ` buffer, waits, and copies out `size` bytes (counted as download).
    pub fn read_mapped(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let done = self.map_read_async(staging, size);
        self.wait()?;
        self.wait_mapped(&done)?;
        self.finish_mapped(staging, size)
    }

    /// Waits until a mapping [`GpuContext::map_read_async`] started has finished, after a wait
    /// for the work before it. Another thread's poll may have collected the mapping's callback
    /// and run it a moment later, so the callback may still be on its way; polling goes on
    /// until it arrives.
    pub fn wait_mapped(&self, done: &MappingReceiver) -> Result<()> {
        use std::sync::mpsc::RecvTimeoutError;
        loop {
            match done.recv_timeout(std::time::Duration::from_millis(1)) {
                Ok(res) => return res.map_err(|e| Error::Readback(e.to_string())),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Readback(
                        "the buffer mapping was dropped before it finished".into(),
                    ))
                }
                Err(RecvTimeoutError::Timeout) => self.wait_until(None)?,
            }
        }
    }

    /// Starts mapping a `MAP_READ` buffer without waiting: the receiver gets the outcome once
    /// the GPU has finished the work before it and the device has been polled
    /// ([`GpuContext::poll`]); then [`GpuContext::finish_mapped`] copies the bytes out.
    pub fn map_read_async(&self, staging: &wgpu::Buffer, size: u64) -> MappingReceiver {
        let (tx, rx) = std::sync::mpsc::channel();
        let _turn = self.turn();
        staging.map_async(wgpu::MapMode::Read, ..size, move |res| {
            let _ = tx.send(res);
        });
        rx
    }

    /// Processes finished GPU work and its callbacks without blocking.
    pub fn poll(&self) -> Result<()> {
        let _turn = self.turn();
        self.inner
            .device
            .poll(wgpu::PollType::Poll)
            .map(|_| ())
            .map_err(|e| Error::Device(e.to_string()))
    }

    /// Copies out the first `size` bytes of a buffer [`GpuContext::map_read_async`] mapped
    /// (counted as download) and unmaps it.
    pub fn finish_mapped(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let _turn = self.turn();
        let bytes = staging
            .get_mapped_range(..size)
            .map_err(|e| Error::Readback(e.to_string()))?
            .to_vec();
        staging.unmap();
        CounterCells::bump(&self.inner.counters.bytes_downloaded, size);
        Ok(bytes)
    }

    /// Copies `size` bytes of `buffer` to the host through a temporary staging buffer. For
    /// tests, checkpoints and inspection; training steps use a preallocated one.
    pub fn read_buffer(&self, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let staging = self.create_buffer(
            "readback",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut encoder = self.encoder("readback");
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.submit(encoder);
        let res = self.read_mapped(&staging, size);
        let _turn = self.turn();
        drop(staging);
        res
    }

    /// The pipeline for a kernel call, created on first use and cached by
    /// (shader, entry, overrides). Validation errors become `Error::Shader`.
    pub fn pipeline(&self, call: &KernelCall) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = format!("{}:{}:{:?}", call.shader.name, call.entry, call.overrides);
        if let Some(p) = self
            .inner
            .pipelines
            .lock()
            .expect("pipeline cache lock")
            .get(&key)
        {
            return Ok(p.clone());
        }
        let device = &self.inner.device;
        let _turn = self.turn();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.module(call.shader);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(call.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &call.overrides,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                name: format!("{}:{}", call.shader.name, call.entry),
                message: err.to_string(),
            });
        }
        CounterCells::bump(&self.inner.counters.pipelines_created, 1);
        let pipeline = Arc::new(pipeline);
        self.inner
            .pipelines
            .lock()
            .expect("pipeline cache lock")
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Drops the cached pipelines nothing else holds (the losers of an autotuning round):
    /// software adapters keep each pipeline's compiled code in host memory, and tuning tries
    /// dozens. A dropped pipeline is compiled again if it is asked for later.
    pub fn release_unused_pipelines(&self) {
        let _turn = self.turn();
        self.inner
            .pipelines
            .lock()
            .expect("pipeline cache lock")
            .retain(|_, p| Arc::strong_count(p) > 1);
    }

    /// Creates a timestamp query set (for profiling).
    pub fn create_timestamp_queries(&self, label: &str, count: u32) -> wgpu::QuerySet {
        let _turn = self.turn();
        self.inner
            .device
            .create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count,
            })
    }

    /// Holds the device for one call into wgpu, on the GL backend; `None` elsewhere. wgpu's GL
    /// backend runs every call that touches the GL context (creating objects, submitting, which
    /// on llvmpipe also runs the kernels, waiting, mapping, destroying) under the adapter's
    /// context lock, and a call that cannot get that lock within 6 s panics ("Could not lock
    /// adapter context"). Threads sharing one context would then crash whenever another held
    /// it longer, as a cold shader compile or a long submission does. Taking turns here first
    /// makes them queue without a time limit; wgpu's own lock is then always free. Objects
    /// dropped elsewhere also reach the context, so owners of many objects drop them in a turn
    /// ([`crate::exec::gpu::Executable`] does).
    pub(crate) fn turn(&self) -> Option<MutexGuard<'_, ()>> {
        self.inner
            .serial
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn module(&self, shader: &'static Shader) -> wgpu::ShaderModule {
        let mut modules = self.inner.modules.lock().expect("module cache lock");
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                self.inner
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                    })
            })
            .clone()
    }
}

fn describe_info(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, vendor: u32, backend: wgpu::Backend) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            vendor,
            ..wgpu::AdapterInfo::new(wgpu::DeviceType::Other, backend)
        }
    }

    #[test]
    fn gl_on_nvidia_is_refused_with_its_reason_and_nothing_else_is() {
        use wgpu::Backend::{Gl, Vulkan};
        // NVIDIA's EGL adapter as wgpu 30 lists it on an H200 (vendor id unknown to GL).
        let nvidia_gl = info("NVIDIA H200/PCIe/SSE2", 0, Gl);
        let problem = known_problem(&nvidia_gl).expect("refused");
        assert!(problem.contains("Parent device is lost") && problem.contains("--adapter vulkan"));
        assert!(known_problem(&info("Quadro", 0x10de, Gl)).is_some());
        assert_eq!(known_problem(&info("NVIDIA H200", 0x10de, Vulkan)), None);
        assert_eq!(
            known_problem(&info("llvmpipe (LLVM 15.0.6, 256 bits)", 0, Gl)),
            None
        );
    }
}
