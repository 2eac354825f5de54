//! Shared workload builders of the benchmarks.

pub mod changelog;
pub mod clicks;
pub mod pipeline;

#[cfg(test)]
mod tests {
    use super::pipeline::*;

    #[test]
    fn pipeline_produces_one_record_per_input_record_every_round() {
        for workload in [
            Workload::PassthroughBatch,
            Workload::PassthroughRecord,
            Workload::CountBatch,
            Workload::CountRecord,
        ] {
            let mut responses = FetchResponses::new(2, 300, 100);
            let mut pipeline = Pipeline::new(workload, 2, 1000);
            assert_eq!(
                pipeline.run(&responses.next_response()),
                600,
                "{workload:?}"
            );
            assert_eq!(
                pipeline.run(&responses.next_response()),
                600,
                "{workload:?} second round"
            );
            let value_len = if matches!(workload, Workload::CountBatch | Workload::CountRecord) {
                8
            } else {
                100
            };
            assert!(
                pipeline.produced_bytes > 1200 * value_len,
                "{workload:?}: every record reached a Produce request"
            );
            assert_eq!(pipeline.produced_records, 1200);
        }
    }
}
