#!/usr/bin/env nextflow
/*
 * teravox: chunked reconstruction of synchrotron parallel-beam X-ray tomography scans.
 *
 *   PLAN ──► [STITCH_ALIGN] ──► PREPROCESS × k ──► COLLECT ──► RECONSTRUCT × j ──► MERGE ──► REPORT ──► CLEANUP
 *
 * This file only wires the stages of src/teravox/graph.py (tests/test_nextflow.py compares
 * the two); each process calls one bin/ command. The chunk fan-out comes from plan.json,
 * so `teravox run` and this workflow share one plan.
 *
 *   nextflow run main.nf -profile test
 *   nextflow run main.nf -profile maxiv,apptainer --scan /data/.../scan.h5 --center 1024.5
 */

include { SYNTH        } from './modules/synth'
include { PLAN         } from './modules/plan'
include { STITCH_ALIGN } from './modules/stitch_align'
include { PREPROCESS   } from './modules/preprocess'
include { COLLECT      } from './modules/collect'
include { RECONSTRUCT  } from './modules/reconstruct'
include { MERGE        } from './modules/merge'
include { REPORT       } from './modules/report'
include { CLEANUP      } from './modules/cleanup'

workflow {
    def schema = readJson(file("${projectDir}/nextflow_schema.json"))
    warnUnknownParams(schema)

    // -- the acquisition: [meta, [scan files]], from --scan, --scan_sheet or --synth
    if (!params.synth && !params.scan && !params.scan_sheet) {
        error("teravox: give --scan FILE or --scan_sheet FILE (or -profile test to try a synthetic scan)")
    }
    SYNTH(params.synth ? channel.of([id: 'synthetic']) : channel.empty())
    def ch_scans = SYNTH.out.scan
        .map { meta, scan -> [meta + [n_scans: 1, sheet: false], [scan]] }
        .mix(params.synth ? channel.empty() : channel.of(userScans()))

    // Files named by teravox parameters (flat_file, dark_file) are staged like the scans,
    // so that every job, in a container or not, reads them from its own directory.
    def aux = auxFiles(schema)
    def sheet = params.scan_sheet ? file(params.scan_sheet, checkIfExists: true) : []
    def params_file = params.params_file ? file(params.params_file, checkIfExists: true) : []
    def tori = params.tori ? file(params.tori, checkIfExists: true) : []
    def ch_raw = ch_scans.map { meta, scans -> [meta, scans + aux] }

    // -- PLAN: plan.json; its chunk lists drive the fan-out below
    PLAN(
        ch_scans.map { meta, scans -> [meta, scans, aux, sheet, params_file, tori] },
        planArgs(schema)
    )
    // meta gains the plan's chunk counts (for groupKey) and whether it stitches scans
    def ch_plan = PLAN.out.plan.map { meta, plan -> [planMeta(meta, plan), plan] }
    // the jobs that read raw data get the scan files too (joined on the scan's id)
    def ch_plan_raw = ch_plan
        .map { meta, plan -> [meta.id, meta, plan] }
        .join(ch_raw.map { meta, raw -> [meta.id, raw] })
        .map { _id, meta, plan, raw -> [meta, plan, raw] }

    // -- STITCH_ALIGN: only for multi-scan acquisitions; the others get no shifts file
    STITCH_ALIGN(ch_plan_raw.filter { meta, _plan, _raw -> meta.multi_scan })
    def ch_shifts = STITCH_ALIGN.out.shifts
        .mix(ch_plan.filter { meta, _plan -> !meta.multi_scan }.map { meta, _plan -> [meta, []] })

    // -- PREPROCESS × k: one job per projection chunk of the plan
    PREPROCESS(
        ch_plan_raw
            .join(ch_shifts)
            .flatMap { meta, plan, raw, shifts ->
                chunkIndices(plan, 'proj_chunks').collect { k -> [meta, plan, k, raw, shifts] }
            }
    )

    // -- COLLECT: as soon as the k chunks of a scan are there
    def ch_proj_chunks = PREPROCESS.out.chunk
        .map { meta, chunk -> [groupKey(meta, meta.n_proj), chunk] }
        .groupTuple()
        .map { key, chunks -> [key.getGroupTarget(), chunks.sort { c -> c.name }] }
    COLLECT(ch_plan.join(ch_proj_chunks))

    // -- RECONSTRUCT × j: one job per sinogram chunk of the plan
    RECONSTRUCT(
        ch_plan
            .join(COLLECT.out.projections)
            .flatMap { meta, plan, projections, _proj_chunks ->
                chunkIndices(plan, 'sino_chunks').collect { j -> [meta, plan, j, projections] }
            }
    )

    // -- MERGE: as soon as the j chunks of a scan are there
    def ch_recon_chunks = RECONSTRUCT.out.chunk
        .map { meta, chunk -> [groupKey(meta, meta.n_sino), chunk] }
        .groupTuple()
        .map { key, chunks -> [key.getGroupTarget(), chunks.sort { c -> c.name }] }
    MERGE(ch_plan.join(ch_recon_chunks))

    // -- REPORT: reads the raw scan, projections.h5, the merged volume (and shifts.json when stitched)
    REPORT(
        ch_plan_raw
            .join(COLLECT.out.projections)
            .join(MERGE.out.volume)
            .join(ch_shifts)
            .map { meta, plan, raw, projections, proj_chunks, volume, shifts ->
                [meta, plan, projections, proj_chunks, volume, raw, shifts]
            }
    )

    // -- CLEANUP: after MERGE and REPORT, the last readers of the intermediates
    CLEANUP(
        ch_plan
            .join(MERGE.out.volume)
            .join(MERGE.out.chunks)
            .join(REPORT.out.report)
            .join(REPORT.out.intermediates)
    )

    // -- versions of what every process ran, nf-core style, in <outdir>/pipeline_info
    channel.empty()
        .mix(
            SYNTH.out.versions, PLAN.out.versions, STITCH_ALIGN.out.versions,
            PREPROCESS.out.versions, COLLECT.out.versions, RECONSTRUCT.out.versions,
            MERGE.out.versions, REPORT.out.versions, CLEANUP.out.versions
        )
        .unique { f -> f.text }
        .map { f -> f.text }
        .mix(channel.of("\"Workflow\":\n    Nextflow: ${workflow.nextflow.version}\n    teravox-pipeline: ${workflow.manifest.version}\n"))
        .collectFile(name: 'teravox_software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true, newLine: false)
}

// -------------------------------------------------------------------------------------------
// helpers

def readJson(path) {
    return new groovy.json.JsonSlurper().parseText(path.text)
}

// meta + the plan's chunk counts and whether it stitches several scans (a scan sheet)
def planMeta(meta, plan) {
    def p = readJson(plan)
    def multi = p.scans instanceof List ? p.scans.size() > 1 : meta.sheet || meta.n_scans > 1
    return meta + [n_proj: p.proj_chunks.size(), n_sino: p.sino_chunks.size(), multi_scan: multi]
}

// The chunk indices of one fan-out ("proj_chunks" or "sino_chunks") of a plan.json.
def chunkIndices(plan, key) {
    def chunks = readJson(plan)[key]
    return chunks.collect { c -> c.index }
}

// The acquisition as [meta, [scan files]]: --scan is one file; a --scan_sheet names the
// scans of a multi-scan acquisition itself (teravox plan reads it).
def userScans() {
    if (!params.scan) {
        def sheet = file(params.scan_sheet)
        return [[id: sheet.baseName, n_scans: 0, sheet: true], []]
    }
    def scan = file(params.scan, checkIfExists: true)
    return [[id: scan.baseName, n_scans: 1, sheet: params.scan_sheet as boolean], [scan]]
}

// teravox parameters (nextflow_schema.json, x-teravox) -> name: schema property
def teravoxParams(schema) {
    def props = [:]
    schema['$defs'].each { _group, definition ->
        definition.properties.each { name, prop ->
            if (prop['x-teravox']) {
                props[name] = prop
            }
        }
    }
    return props
}

// Files named by teravox parameters (format: file-path), staged into the jobs.
def auxFiles(schema) {
    def names = teravoxParams(schema).findAll { name, prop -> prop.format == 'file-path' && params[name] }.keySet()
    return names.collect { name -> file(params[name], checkIfExists: true) }
}

// The `teravox plan` flags of the teravox parameters that differ from their defaults, so
// that a --params_file or --tori file keeps its values unless the command line overrides
// them. --memory is always given: it is the budget the SLURM jobs are sized for too.
def planArgs(schema) {
    def args = []
    teravoxParams(schema).each { name, prop ->
        def value = params[name]
        if (name == 'memory' || value != prop['default']) {
            if (prop.format == 'file-path' && value) {
                value = file(value).name
            }
            args << "--${name.replace('_', '-')} ${shellQuote(cliValue(value))}"
        }
    }
    return args.join(' ')
}

def cliValue(value) {
    if (value == null) {
        return 'none'
    }
    if (value instanceof List || value instanceof Map) {
        return groovy.json.JsonOutput.toJson(value)
    }
    return value.toString()
}

def shellQuote(text) {
    return "'" + text.replace("'", "'\\''") + "'"
}

// A mistyped parameter (--centre) would otherwise be ignored without a word, and so would
// --proj-chunks: Nextflow keeps it as params['proj-chunks'], not params.proj_chunks.
def warnUnknownParams(schema) {
    def known = [] as Set
    schema['$defs'].each { _group, definition -> known.addAll(definition.properties.keySet()) }
    def unknown = params.keySet().findAll { name -> !(name in known) }
    def respelt = unknown.collect { name -> name.replaceAll(/([A-Z])/, '_$1').toLowerCase().replace('-', '_') }
        .findAll { name -> name in known }
        .unique()
    if (respelt) {
        error("teravox: write parameters with underscores: ${respelt.collect { name -> '--' + name }.join(', ')}")
    }
    if (unknown) {
        log.warn("teravox: unknown parameter(s) ignored: ${unknown.sort().join(', ')} (nextflow_schema.json lists the parameters)")
    }
}
