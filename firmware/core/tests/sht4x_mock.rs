//! The SHT4x driver against embedded-hal-mock's I2C: exact bus transactions, conversions and
//! CRC checks.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};
use sensor_node_core::sensor::{Precision, SHT4X_ADDRESS, Sht4x, Sht4xError, sensirion_crc8};
use sensor_node_core::{Measurement, Sensor};
use telemetry_wire::SensorKind;

/// Six response bytes for raw words `t` and `rh`, with correct CRCs.
fn response(t: u16, rh: u16) -> Vec<u8> {
    let [t0, t1] = t.to_be_bytes();
    let [h0, h1] = rh.to_be_bytes();
    vec![
        t0,
        t1,
        sensirion_crc8(&[t0, t1]),
        h0,
        h1,
        sensirion_crc8(&[h0, h1]),
    ]
}

fn fetch_all<S: Sensor>(sensor: &mut S) -> Result<Vec<Measurement>, S::Error> {
    let mut out = Vec::new();
    sensor.fetch(&mut |m| out.push(m))?;
    Ok(out)
}

#[test]
fn high_precision_measurement_converts_both_channels() {
    // 0x6666 -> 25.0 °C; 0x8000 -> 56.5 %RH (datasheet formulas).
    let expectations = [
        Transaction::write(SHT4X_ADDRESS, vec![0xFD]),
        Transaction::read(SHT4X_ADDRESS, response(0x6666, 0x8000)),
    ];
    let mut i2c = I2cMock::new(&expectations);
    let mut sht = Sht4x::new(i2c.clone(), SHT4X_ADDRESS, Precision::High, 3);
    assert_eq!(sht.start(), Ok(9));
    let got = fetch_all(&mut sht).expect("valid response");
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].channel, got[0].kind),
        (3, SensorKind::TEMPERATURE_C)
    );
    assert!((got[0].value - 25.0).abs() < 0.01, "{}", got[0].value);
    assert_eq!((got[1].channel, got[1].kind), (4, SensorKind::HUMIDITY_PCT));
    assert!((got[1].value - 56.5).abs() < 0.01, "{}", got[1].value);
    i2c.done();
}

#[test]
fn corrupted_response_is_a_crc_error_not_a_reading() {
    let mut bad = response(0x6666, 0x8000);
    bad[4] ^= 0x01;
    let expectations = [
        Transaction::write(SHT4X_ADDRESS, vec![0xE0]),
        Transaction::read(SHT4X_ADDRESS, bad),
    ];
    let mut i2c = I2cMock::new(&expectations);
    let mut sht = Sht4x::new(i2c.clone(), SHT4X_ADDRESS, Precision::Low, 0);
    assert_eq!(sht.start(), Ok(2));
    assert_eq!(fetch_all(&mut sht), Err(Sht4xError::Crc));
    i2c.done();
}

#[test]
fn bus_errors_are_reported() {
    let expectations = [
        Transaction::write(SHT4X_ADDRESS, vec![0xF6]).with_error(ErrorKind::Other),
        Transaction::write(SHT4X_ADDRESS, vec![0x94]),
    ];
    let mut i2c = I2cMock::new(&expectations);
    let mut sht = Sht4x::new(i2c.clone(), SHT4X_ADDRESS, Precision::Medium, 0);
    assert_eq!(sht.start(), Err(Sht4xError::I2c(ErrorKind::Other)));
    assert_eq!(sht.soft_reset(), Ok(()));
    drop(sht.release());
    i2c.done();
}
