#!/usr/bin/env nextflow
/*
 * teravox: chunked reconstruction of synchrotron parallel-beam X-ray tomography scans.
 *
 *   PLAN ──► [STITCH_ALIGN] ──► PREPROCESS × k ──► COLLECT ──► RECONSTRUCT × j ──► MERGE ──► REPORT ──► CLEANUP
 *                                                                                        └──► [Z_STITCH]
 *
 * A vertical stack (a scan sheet with heights) runs every level as an acquisition of its
 * own, in parallel, from its own plan; Z_STITCH joins the levels' volumes.
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
include { Z_STITCH     } from './modules/z_stitch'
include { CENTER_SWEEP } from './modules/center_sweep'

workflow {
    def schema = readJson(file("${projectDir}/nextflow_schema.json"))
    checkParams(schema)

    // -- the acquisition: [meta, [scan files]], from --scan, --scan_sheet, --tori or --synth
    checkInputs()
    // (a channel expression inside a process call's arguments trips Nextflow 24.10's parser)
    def ch_synth = params.synth ? channel.of([id: 'synthetic']) : channel.empty()
    SYNTH(ch_synth)
    def ch_scans = SYNTH.out.scan
        .map { meta, scan -> [meta + [n_scans: 1, sheet: false], [scan]] }
        .mix(params.synth ? channel.empty() : channel.of(userScans()))

    // Files named by teravox parameters (flat_file, dark_file) are staged like the scans,
    // so that every job, in a container or not, reads them from its own directory.
    def aux = checkStagedNames(auxFiles(schema))
    def sheet = params.scan_sheet ? userFile('scan_sheet') : []
    def params_file = params.params_file ? userFile('params_file') : []
    def tori = params.tori ? userFile('tori') : []
    def ch_raw = ch_scans.map { meta, scans -> [meta, scans + aux] }

    // -- PLAN: plan.json; its chunk lists drive the fan-out below
    PLAN(
        ch_scans.map { meta, scans -> [meta, scans, aux, sheet, params_file, tori] },
        planArgs(schema)
    )
    // a vertical stack's levels run as acquisitions of their own, each from its own plan
    def ch_stacks = PLAN.out.plan.join(PLAN.out.levels)
    def ch_levels = ch_stacks.flatMap { meta, _stack, levels -> levelPlans(meta, levels) }
    // meta gains the plan's chunk counts (for groupKey) and whether it stitches scans
    def ch_plan = PLAN.out.plan
        .filter { _meta, plan -> readJson(plan).kind != 'zstack' }
        .mix(ch_levels)
        .map { meta, plan -> [planMeta(meta, plan), plan] }
    // the jobs that read raw data get the scan files too (by the acquisition's id: a stack's
    // levels share its files)
    def ch_plan_raw = ch_plan
        .map { meta, plan -> [meta.stack ?: meta.id, meta, plan] }
        .combine(ch_raw.map { meta, raw -> [meta.id, raw] }, by: 0)
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

    // -- CENTER_SWEEP (--center_sweep): trial slices at a series of centres, in place of
    // everything after COLLECT
    def ch_collected = ch_plan.join(COLLECT.out.projections)
    def ch_sweep = params.center_sweep ? ch_collected : channel.empty()
    CENTER_SWEEP(ch_sweep)
    def ch_volume = params.center_sweep ? channel.empty() : ch_collected

    // -- RECONSTRUCT × j: one job per sinogram chunk of the plan
    RECONSTRUCT(
        ch_volume
            .flatMap { meta, plan, projections, _proj_chunks ->
                chunkIndices(plan, 'sino_chunks').collect { j -> [meta, plan, j, projections] }
            }
    )

    // -- MERGE: as soon as the j chunks of a scan are there
    // (a task emits one piece per --format: recon_<j>.h5, recon_<j>.zarr, recon_<j>_tiff)
    def ch_recon_chunks = RECONSTRUCT.out.chunk
        .map { meta, chunk -> [groupKey(meta, meta.n_sino), chunk] }
        .groupTuple()
        .map { key, chunks -> [key.getGroupTarget(), chunks.flatten().sort { c -> c.name }] }
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

    // -- Z_STITCH: a stack's levels joined along z, once all its levels are merged
    def ch_level_volumes = MERGE.out.volume
        .filter { meta, _volume -> meta.stack }
        .map { meta, volume -> [groupKey(meta.stack, meta.n_levels), volume] }
        .groupTuple()
        .map { key, volumes -> [key.getGroupTarget(), volumes] }
    Z_STITCH(
        ch_stacks
            .map { meta, stack, _levels -> [meta.id, meta, stack] }
            .join(ch_level_volumes)
            .map { _id, meta, stack, volumes -> [meta, stack, volumes] }
    )

    // -- versions of what every process ran, nf-core style, in <outdir>/pipeline_info
    channel.empty()
        .mix(
            SYNTH.out.versions, PLAN.out.versions, STITCH_ALIGN.out.versions,
            PREPROCESS.out.versions, COLLECT.out.versions, RECONSTRUCT.out.versions,
            MERGE.out.versions, REPORT.out.versions, CLEANUP.out.versions, Z_STITCH.out.versions,
            CENTER_SWEEP.out.versions
        )
        .unique { f -> f.text }
        .map { f -> f.text }
        .mix(channel.of(workflowVersions()))
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

// The levels of a vertical stack as acquisitions: [meta of the level, its plan], the level
// named by its plan (<stack>_z<k>), the stack's id and level count kept for Z_STITCH.
def levelPlans(meta, levels) {
    def plans = levels instanceof List ? levels : [levels]
    return plans.collect { plan ->
        def p = readJson(plan)
        def n_scans = p.scans instanceof List ? p.scans.size() : 1
        [meta + [id: p.name, stack: meta.id, n_levels: plans.size(), n_scans: n_scans, sheet: n_scans > 1], plan]
    }
}

// The versions block of the workflow itself, as a plain String: collectFile serialises what
// it collects, and a GString would carry Nextflow's VersionNumber, which cannot be.
def workflowVersions() {
    return "\"Workflow\":\n    Nextflow: ${workflow.nextflow.version}\n    teravox-pipeline: ${workflow.manifest.version}\n".toString()
}

// The chunk indices of one fan-out ("proj_chunks" or "sino_chunks") of a plan.json.
def chunkIndices(plan, key) {
    def chunks = readJson(plan)[key]
    return chunks.collect { c -> c.index }
}

// What to reconstruct must be given, once, and exist: one line that says what is wrong,
// before any job starts.
def checkInputs() {
    def given = ['scan', 'scan_sheet'].findAll { name -> params[name] }
    if (params.synth) {
        return
    }
    if (!given && !params.tori) {
        error("teravox: give --scan FILE (a DXchange or NXtomo scan), --scan_sheet FILE (offset scans to stitch) or --tori FILE (DanMAX Reconstructor settings); -profile test tries a synthetic scan")
    }
    if (given.size() > 1) {
        error("teravox: give either --scan or --scan_sheet, not both")
    }
    ['scan', 'scan_sheet', 'params_file', 'tori'].each { name -> if (params[name]) userFile(name) }
}

// The file a path parameter names (taken literally: no glob), or a one-line error. A scan,
// its flats and its darks may be folders (of TIFF frames): their schema format is 'path'.
def userFile(name) {
    def value = params[name]
    if (!(value instanceof CharSequence) || !value.toString().trim()) {
        error("teravox: --${name} needs a file path, got '${value}'")
    }
    def f = file(value.toString(), glob: false)
    if (!f.exists()) {
        error("teravox: --${name} ${value}: no such file or folder")
    }
    if (f.isDirectory() && !(name in ['scan', 'flat_file', 'dark_file'])) {
        error("teravox: --${name} ${value}: is a folder, expected a file")
    }
    return f
}

// The raw files are staged beside the pipeline's own files in the jobs that read them: a
// scan named like one of those (projections.h5, proj_0000.h5 ...) would collide with it.
def checkStagedNames(files) {
    def reserved = /plan\.json|shifts\.json|projections\.h5|versions\.yml|(proj|recon)_[0-9].*/
    def clash = files.findAll { f -> f.name ==~ reserved }
    if (clash) {
        error("teravox: ${clash[0]}: a scan or side file cannot be named ${clash[0].name} (a file of the pipeline's own has that name); rename it or link it under another name")
    }
    return files
}

// The acquisition as [meta, [scan files]]: --scan is one file; a --scan_sheet names the
// scans of a multi-scan acquisition itself (teravox plan reads it); a .tori file names its
// scan in file_definitions.data_file (relative paths from the .tori's folder).
def userScans() {
    if (params.scan_sheet) {
        def sheet = userFile('scan_sheet')
        return [[id: sheet.baseName, n_scans: 0, sheet: true], []]
    }
    def scan = params.scan ? userFile('scan') : toriScan()
    return [[id: scan.baseName, n_scans: 1, sheet: false], checkStagedNames([scan])]
}

def toriScan() {
    def tori = userFile('tori')
    def settings = readJson(tori)
    def data_file = settings instanceof Map ? settings.file_definitions?.data_file : null
    if (!data_file) {
        error("teravox: --tori ${params.tori}: file_definitions.data_file names no scan; give --scan FILE")
    }
    def scan = data_file.toString().startsWith('/') ? file(data_file.toString(), glob: false) : tori.parent.resolve(data_file.toString())
    if (!scan.exists()) {
        error("teravox: --tori ${params.tori}: its data_file ${data_file} does not exist; give --scan FILE")
    }
    return scan
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

// Files and folders named by teravox parameters (format: file-path or path), staged into
// the jobs.
def auxFiles(schema) {
    def names = teravoxParams(schema).findAll { name, prop -> prop.format in ['file-path', 'path'] && params[name] }.keySet()
    return names.collect { name -> userFile(name) }
}

// The `teravox plan` flags of the teravox parameters that differ from their defaults, so
// that a --params_file or --tori file keeps its values unless the command line overrides
// them. --memory is always given: it is the budget the SLURM jobs are sized for too.
def planArgs(schema) {
    def args = []
    teravoxParams(schema).each { name, prop ->
        def value = params[name]
        if (name == 'memory' || value != prop['default']) {
            if (prop.format in ['file-path', 'path'] && value) {
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

// A mistyped parameter (--centre) would otherwise be ignored without a word and the run go
// on without it, and so would --proj-chunks: Nextflow keeps it as params['proj-chunks'] (and
// params.projChunks), not params.proj_chunks. Both stop the run before any job starts.
def checkParams(schema) {
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
        def hints = unknown.sort().collect { name ->
            def near = known.findAll { k -> editDistance(name.toLowerCase(), k) <= Math.max(2, (int) (k.size() / 4)) }.sort()
            near ? "--${name} (did you mean ${near.collect { k -> '--' + k }.join(' or ')}?)" : "--${name}"
        }
        error("teravox: unknown parameter(s) ${hints.join(', ')}; nextflow_schema.json lists the parameters")
    }
}

// Levenshtein distance, for the suggestions above.
def editDistance(a, b) {
    def prev = (0..b.size()).toList()
    a.eachWithIndex { ca, i ->
        def cur = [i + 1]
        b.eachWithIndex { cb, j ->
            cur << [prev[j + 1] + 1, cur[j] + 1, prev[j] + (ca == cb ? 0 : 1)].min()
        }
        prev = cur
    }
    return prev[b.size()]
}
