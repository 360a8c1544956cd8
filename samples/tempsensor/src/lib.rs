//! A simulated temperature sensor module, modelled on Microsoft's SimulatedTemperatureSensor
//! (`mcr.microsoft.com/azureiotedge-simulated-temperature-sensor`): a machine whose temperature
//! climbs from `machineTempMin` towards `machineTempMax` (pressure follows it), an ambient
//! temperature around `ambientTemp` and a humidity around `ambientHumidity`, sent as JSON on the
//! output `temperatureOutput` every `SendInterval` seconds, `MessageCount` times.
//!
//! Pure parts live here and are unit-tested: the [`simulator`] (seedable, so a test can predict
//! every reading), the [`settings`] from the environment and desired properties, and the
//! [`message`] format. `main.rs` is the I/O shell on `ironedge-module-client`.
//!
//! ```
//! use ironedge_tempsensor::simulator::{Simulator, SimulatorParameters};
//!
//! let mut sim = Simulator::new(SimulatorParameters::default(), 42);
//! let first = sim.next_reading();
//! assert!(first.machine.temperature >= 20.0 && first.machine.temperature < 23.0);
//! ```

pub mod message;
pub mod settings;
pub mod simulator;
