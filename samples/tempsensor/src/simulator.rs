//! The simulation, step for step as SimulatedTemperatureSensor does it: the machine temperature
//! rises by -0.25…+1.25 per reading until it passes the maximum, then wanders ±0.5 around it;
//! pressure is linear in temperature; the ambient temperature is `ambientTemp` ± 0.5 and the
//! humidity an integer within one of `ambientHumidity`. The random numbers come from a seeded
//! SplitMix64, so the same seed gives the same readings.

use serde::{Deserialize, Serialize};

/// The simulated machine and room.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorParameters {
    /// Start (and reset) temperature of the machine.
    pub machine_temp_min: f64,
    /// Temperature the machine climbs to.
    pub machine_temp_max: f64,
    /// Pressure at `machine_temp_min`.
    pub machine_pressure_min: f64,
    /// Pressure at `machine_temp_max`.
    pub machine_pressure_max: f64,
    /// Mean ambient temperature.
    pub ambient_temp: f64,
    /// Mean ambient humidity in percent.
    pub humidity_percent: i64,
}

impl Default for SimulatorParameters {
    fn default() -> Self {
        Self {
            machine_temp_min: 21.0,
            machine_temp_max: 100.0,
            machine_pressure_min: 1.0,
            machine_pressure_max: 10.0,
            ambient_temp: 21.0,
            humidity_percent: 25,
        }
    }
}

/// The machine part of a reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Degrees Celsius.
    pub temperature: f64,
    /// Bar.
    pub pressure: f64,
}

/// The room part of a reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ambient {
    /// Degrees Celsius.
    pub temperature: f64,
    /// Percent.
    pub humidity: i64,
}

/// One reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The machine.
    pub machine: Machine,
    /// The room.
    pub ambient: Ambient,
}

/// SplitMix64: tiny, fast and good enough for a simulation that must be reproducible.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [low, high).
    fn next_range(&mut self, low: i64, high: i64) -> i64 {
        let span = high.saturating_sub(low).max(1) as u64;
        low + (self.next_u64() % span) as i64
    }
}

/// The running simulation.
#[derive(Clone, Debug)]
pub struct Simulator {
    parameters: SimulatorParameters,
    current: f64,
    rng: SplitMix64,
}

impl Simulator {
    /// A simulation starting at the minimum machine temperature.
    pub fn new(parameters: SimulatorParameters, seed: u64) -> Self {
        Self {
            current: parameters.machine_temp_min,
            parameters,
            rng: SplitMix64(seed),
        }
    }

    /// The parameters.
    pub fn parameters(&self) -> &SimulatorParameters {
        &self.parameters
    }

    /// Back to the minimum machine temperature (the module's `reset` command).
    pub fn reset(&mut self) {
        self.current = self.parameters.machine_temp_min;
    }

    /// The next reading.
    pub fn next_reading(&mut self) -> Reading {
        let p = &self.parameters;
        if self.current > p.machine_temp_max {
            self.current += self.rng.next_f64() - 0.5;
        } else {
            self.current += -0.25 + self.rng.next_f64() * 1.5;
        }
        let span = p.machine_temp_max - p.machine_temp_min;
        let per_degree = if span > 0.0 {
            (p.machine_pressure_max - p.machine_pressure_min) / span
        } else {
            0.0
        };
        let machine = Machine {
            temperature: self.current,
            pressure: p.machine_pressure_min + (self.current - p.machine_temp_min) * per_degree,
        };
        let ambient = Ambient {
            temperature: p.ambient_temp + self.rng.next_f64() - 0.5,
            humidity: self
                .rng
                .next_range(p.humidity_percent - 1, p.humidity_percent + 2),
        };
        Reading { machine, ambient }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_readings() {
        let mut a = Simulator::new(SimulatorParameters::default(), 7);
        let mut b = Simulator::new(SimulatorParameters::default(), 7);
        let mut c = Simulator::new(SimulatorParameters::default(), 8);
        let ra: Vec<_> = (0..50).map(|_| a.next_reading()).collect();
        let rb: Vec<_> = (0..50).map(|_| b.next_reading()).collect();
        let rc: Vec<_> = (0..50).map(|_| c.next_reading()).collect();
        assert_eq!(ra, rb);
        assert_ne!(ra, rc);
    }

    #[test]
    fn the_machine_warms_up_to_the_maximum_and_stays_around_it() {
        let mut sim = Simulator::new(SimulatorParameters::default(), 1);
        let readings: Vec<_> = (0..1000).map(|_| sim.next_reading()).collect();
        // Mean step +0.5 below the maximum: after 300 steps the machine has reached 100 °C;
        // above it the temperature is a random walk of ±0.5 steps that falls back whenever it
        // drops below the maximum, so it never strays far below it.
        assert!(readings[300].machine.temperature > 100.0 - 1.25);
        for r in &readings[300..] {
            assert!(r.machine.temperature > 100.0 - 1.25, "{r:?}");
            assert!(r.machine.temperature < 100.0 + 40.0, "{r:?}");
        }
        for w in readings[..100].windows(2) {
            let step = w[1].machine.temperature - w[0].machine.temperature;
            assert!((-0.25..1.25).contains(&step), "step {step}");
        }
    }

    #[test]
    fn pressure_follows_temperature_and_the_room_stays_near_its_means() {
        let mut sim = Simulator::new(SimulatorParameters::default(), 3);
        for _ in 0..500 {
            let r = sim.next_reading();
            let expected = 1.0 + (r.machine.temperature - 21.0) * 9.0 / 79.0;
            assert!((r.machine.pressure - expected).abs() < 1e-9);
            assert!((20.5..21.5).contains(&r.ambient.temperature));
            assert!((24..=26).contains(&r.ambient.humidity));
        }
    }

    #[test]
    fn reset_goes_back_to_the_minimum() {
        let mut sim = Simulator::new(SimulatorParameters::default(), 5);
        for _ in 0..100 {
            sim.next_reading();
        }
        sim.reset();
        assert!(sim.next_reading().machine.temperature < 21.0 + 1.25);
    }
}
