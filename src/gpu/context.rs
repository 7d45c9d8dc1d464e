//! Instance, adapter and device: picks the best adapter (or the one the user names), requests
//! the adapter's own limits, and wraps every object-creating or data-moving call so the
//! counters stay true.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::gpu::counters::{CounterCells, Counters};
use crate::ops::{DeviceCaps, KernelCall, Shader};
use crate::{Error, Result};

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
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    counters: CounterCells,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
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
        // Native APIs first; GL only when asked for or when no native adapter exists (probing
        // GL without a display also prints EGL noise).
        let mut adapters = Vec::new();
        let tries = match choice {
            AdapterChoice::Backend(b) => vec![wgpu::Backends::from(*b)],
            _ => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
        };
        for backends in tries {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            adapters = instance.enumerate_adapters(backends).await;
            if !adapters.is_empty() {
                break;
            }
        }
        let names: Vec<String> = adapters
            .iter()
            .map(|a| describe_info(&a.get_info()))
            .collect();
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
        let Some(adapter) = candidates.into_iter().next() else {
            return Err(Error::NoAdapter(match (choice, names.is_empty()) {
                (_, true) => format!("no GPU adapter found; {NO_ADAPTER_HINT}"),
                (AdapterChoice::Name(n), false) => format!(
                    "no adapter name contains {n:?}; available: {}",
                    names.join("; ")
                ),
                (AdapterChoice::Backend(b), false) => {
                    format!("no {b:?} adapter; available: {}", names.join("; "))
                }
                (AdapterChoice::Best, false) => {
                    unreachable!("an unfiltered non-empty list has a best adapter")
                }
            }));
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Subgroup operations where the adapter has them: the texture GEMM shares its row
        // operand through subgroup broadcasts when subgroups are exactly 8 lanes wide.
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
        Ok(GpuContext {
            no_subgroups: false,
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                counters: CounterCells::default(),
                modules: Mutex::default(),
                pipelines: Mutex::default(),
            }),
        })
    }

    /// The same device, on which ops offer the plans they offer where an adapter has no
    /// subgroups (those run anywhere): tests check those variants on this device too.
    pub fn without_subgroups(&self) -> Self {
        GpuContext {
            inner: self.inner.clone(),
            no_subgroups: true,
        }
    }

    /// What ops may assume when they offer plans.
    pub fn caps(&self) -> DeviceCaps {
        let info = &self.inner.info;
        DeviceCaps {
            subgroups8: !self.no_subgroups
                && self
                    .inner
                    .device
                    .features()
                    .contains(wgpu::Features::SUBGROUP)
                && info.subgroup_min_size == 8
                && info.subgroup_max_size == 8,
            max_texture_dim: self.inner.limits.max_texture_dimension_2d,
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
        self.inner.queue.submit([encoder.finish()])
    }

    /// Blocks until one earlier submission is done (counted as backpressure, not a readback).
    pub fn wait_for(&self, submission: wgpu::SubmissionIndex) -> Result<()> {
        CounterCells::bump(&self.inner.counters.backpressure_waits, 1);
        self.inner
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| Error::Device(e.to_string()))
    }

    /// Blocks until all submitted work is done (counted).
    pub fn wait(&self) -> Result<()> {
        CounterCells::bump(&self.inner.counters.blocking_waits, 1);
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Device(e.to_string()))
    }

    /// Maps a `MAP_READ` buffer, waits, and copies out `size` bytes (counted as download).
    pub fn read_mapped(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let done = self.map_read_async(staging, size);
        self.wait()?;
        done.recv()
            .map_err(|_| Error::Readback("map callback never ran".into()))?
            .map_err(|e| Error::Readback(e.to_string()))?;
        self.finish_mapped(staging, size)
    }

    /// Starts mapping a `MAP_READ` buffer without waiting: the receiver gets the outcome once
    /// the GPU has finished the work before it and the device has been polled
    /// ([`GpuContext::poll`]); then [`GpuContext::finish_mapped`] copies the bytes out.
    pub fn map_read_async(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>> {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |res| {
            let _ = tx.send(res);
        });
        rx
    }

    /// Processes finished GPU work and its callbacks without blocking.
    pub fn poll(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::Poll)
            .map(|_| ())
            .map_err(|e| Error::Device(e.to_string()))
    }

    /// Copies out the first `size` bytes of a buffer [`GpuContext::map_read_async`] mapped
    /// (counted as download) and unmaps it.
    pub fn finish_mapped(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
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
        self.read_mapped(&staging, size)
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
        self.inner
            .pipelines
            .lock()
            .expect("pipeline cache lock")
            .retain(|_, p| Arc::strong_count(p) > 1);
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
