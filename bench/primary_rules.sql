-- The protocol's primary rules (PROTOCOL.md, rule set v1 thresholds) as one plain DuckDB SQL
-- script over the six transfer files: the honest baseline for bench/files_to_outcomes.py.
-- It does what tract's ingest + outcomes must do at the least: read every row with its types,
-- keep each record's current version, and decide per tract and per patient. It does not
-- validate rows, keep dead letters, record identities, raise conflicts or keep an audit trail.
-- Parameters: ${DIR} (the folder of the six files).

CREATE OR REPLACE TABLE subjects_raw AS SELECT * FROM read_csv('${DIR}/subjects.csv', all_varchar = true);
CREATE OR REPLACE TABLE tracts_raw AS SELECT * FROM read_csv('${DIR}/tracts.csv', all_varchar = true);
CREATE OR REPLACE TABLE exams_raw AS SELECT * FROM read_csv('${DIR}/clinical_exams.csv', all_varchar = true);
CREATE OR REPLACE TABLE reads_raw AS SELECT * FROM read_json('${DIR}/mri_reads.jsonl', format = 'newline_delimited');
CREATE OR REPLACE TABLE injections_raw AS SELECT * FROM read_csv('${DIR}/injections.csv', all_varchar = true);
CREATE OR REPLACE TABLE pathology_raw AS SELECT * FROM read_csv('${DIR}/pathology.csv', all_varchar = true);

CREATE OR REPLACE TABLE subjects AS
    SELECT subject_id, status FROM (
        SELECT *, row_number() OVER (PARTITION BY record_id ORDER BY record_version::INT DESC) AS rn
        FROM subjects_raw) WHERE rn = 1 AND coalesce(deleted, 'N') <> 'Y';
CREATE OR REPLACE TABLE tracts AS
    SELECT subject_id, tract_id FROM (
        SELECT *, row_number() OVER (PARTITION BY record_id ORDER BY record_version::INT DESC) AS rn
        FROM tracts_raw) WHERE rn = 1 AND coalesce(deleted, 'N') <> 'Y' AND treated = 'Y';
CREATE OR REPLACE TABLE exams AS
    SELECT subject_id, tract_id, visit, exam_date::DATE AS exam_date,
           external_opening = 'CLOSED' AND drains_on_compression = 'N' AS closed,
           discharge_grade::INT AS grade
    FROM (SELECT *, row_number() OVER (PARTITION BY record_id ORDER BY record_version::INT DESC) AS rn
          FROM exams_raw) WHERE rn = 1 AND coalesce(deleted, 'N') <> 'Y';
CREATE OR REPLACE TABLE reads AS
    SELECT subject_id, tract_id, reader_role,
           image_quality = 'ADEQUATE' AS evaluable,
           NOT t2_hyperintense AND coalesce(len(list_filter(collection_mm, lambda x: x > 20)), 0) < 2 AS healed
    FROM (SELECT *, row_number() OVER (PARTITION BY read_id ORDER BY read_version DESC) AS rn
          FROM reads_raw WHERE timepoint = 'MRI_FINAL')
    WHERE rn = 1 AND NOT coalesce(deleted, false)
    QUALIFY row_number() OVER (PARTITION BY subject_id, tract_id, reader_role ORDER BY read_at DESC) = 1;

CREATE OR REPLACE TABLE tract_outcomes AS
WITH clinical AS (
    SELECT t.subject_id, t.tract_id,
        CASE WHEN f6.closed IS NULL THEN NULL
             WHEN NOT f6.closed THEN 'NOT_CLOSED'
             WHEN f5.closed IS NULL THEN NULL
             WHEN f5.closed AND f6.exam_date - f5.exam_date >= 28 THEN 'CLOSED'
             ELSE 'NOT_CLOSED' END AS clinical,
        i1.grade AS grade_inj1, f6.grade AS grade_fu6
    FROM tracts t
    LEFT JOIN exams f6 ON f6.subject_id = t.subject_id AND f6.tract_id = t.tract_id AND f6.visit = 'FU6'
    LEFT JOIN exams f5 ON f5.subject_id = t.subject_id AND f5.tract_id = t.tract_id AND f5.visit = 'FU5'
    LEFT JOIN exams i1 ON i1.subject_id = t.subject_id AND i1.tract_id = t.tract_id AND i1.visit = 'INJ1'
), mri AS (
    SELECT t.subject_id, t.tract_id,
        CASE WHEN r1.evaluable AND r2.evaluable AND r1.healed = r2.healed THEN r1.healed
             WHEN adj.evaluable THEN adj.healed END AS healed
    FROM tracts t
    LEFT JOIN reads r1 ON r1.subject_id = t.subject_id AND r1.tract_id = t.tract_id AND r1.reader_role = 'R1'
    LEFT JOIN reads r2 ON r2.subject_id = t.subject_id AND r2.tract_id = t.tract_id AND r2.reader_role = 'R2'
    LEFT JOIN reads adj ON adj.subject_id = t.subject_id AND adj.tract_id = t.tract_id AND adj.reader_role = 'ADJ'
)
SELECT c.subject_id, c.tract_id,
    CASE WHEN c.clinical = 'NOT_CLOSED' OR NOT m.healed THEN 'NOT_CLOSED'
         WHEN c.clinical = 'CLOSED' AND m.healed THEN 'CLOSED' ELSE 'PENDING' END AS outcome,
    c.grade_fu6 <= c.grade_inj1 - 1 AS discharge_improved
FROM clinical c JOIN mri m USING (subject_id, tract_id);

CREATE OR REPLACE TABLE patient_outcomes AS
SELECT s.subject_id,
    CASE WHEN s.status <> 'COMPLETED' THEN s.status
         WHEN bool_or(o.outcome = 'PENDING') THEN 'PENDING'
         WHEN bool_and(o.outcome = 'CLOSED') THEN 'FULL_CLOSURE'
         WHEN bool_or(o.outcome = 'CLOSED') OR bool_or(coalesce(o.discharge_improved, false)) THEN 'IMPROVED'
         ELSE 'RESISTANT' END AS category
FROM subjects s LEFT JOIN tract_outcomes o USING (subject_id)
GROUP BY s.subject_id, s.status;

SELECT category, count(*) AS patients FROM patient_outcomes GROUP BY 1 ORDER BY 1;
