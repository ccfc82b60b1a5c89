//! Simulated meters that push their counters over MQTT (JSON with value and
//! timestamp), as smart water meters and IoT gateways do.

use meterflow_model::clock::now_ms;
use std::time::Duration;

use chrono_tz::Tz;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::SimMeter;

/// One pushed meter: topic and simulated counter.
pub struct Pushed {
    /// Topic to publish to.
    pub topic: String,
    /// The meter.
    pub meter: SimMeter,
}

/// Publish every meter's counter every `every` until the task is dropped.
pub async fn publish_loop(
    host: &str,
    port: u16,
    client_id: &str,
    meters: Vec<Pushed>,
    every: Duration,
    tz: Tz,
) {
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    // The event loop must be polled for anything to leave; it runs on its own task.
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let start = now_ms();
    let mut counters: Vec<f64> = meters.iter().map(|p| p.meter.start_register).collect();
    let mut last = start;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = now_ms();
        for (p, c) in meters.iter().zip(counters.iter_mut()) {
            *c += crate::sum_quarters(&p.meter, tz, last, now) / p.meter.multiplier;
            let payload = format!("{{\"value\": {:.3}, \"ts\": {now}}}", c);
            if let Err(e) = client
                .publish(p.topic.clone(), QoS::AtLeastOnce, false, payload)
                .await
            {
                tracing::debug!(error = %e, "Simulated publish failed.");
            }
        }
        last = now;
    }
}
