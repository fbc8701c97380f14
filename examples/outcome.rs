//! The outcome benchmark: what curated data does for the small model, on
//! real labelled data (`../shared/data`), with both small models.
//!
//! For each set and each draw (seeded): shuffle, take `--seeds` examples
//! per class as seeds, keep `--val` rows as the validation set (never
//! trained or scored on here: it is what an S3 round would mine for
//! errors), score on the next `--test` rows, and train on
//!
//! * the seeds only;
//! * the seeds + `--extra` more real labelled rows (the ceiling for that
//!   many curated examples);
//! * the seeds + curated examples, when given (`--curated SET=FILE.jsonl`
//!   with `text`/`label` lines, or `--project SET=DIR`: the project's
//!   accepted generated examples), with as many real rows in the ceiling.
//!
//! Prints a Markdown table of mean accuracy (and macro-F1) over the draws
//! for the n-gram and the embedding model, with chance level, and the
//! embedding model's calibration error. Run with `scripts/outcome.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use straddle::classify::{
    Classifier, Dense, LabelledSet, LinearConfig, TrainConfig, argmax, fit_calibrated, reliability,
    score,
};
use straddle::embed::{Embedder, LocalEmbedder, VectorStore, default_model_dir};
use straddle::store::Project;
use straddle::store::seeds::{Columns, read_examples};

struct Args {
    data: PathBuf,
    sets: Vec<String>,
    draws: usize,
    seeds: usize,
    val: usize,
    test: usize,
    extra: usize,
    curated: BTreeMap<String, Curated>,
    /// `--run SET=DIR`: a generation run recorded in a project made by
    /// `scripts/shared-project.sh` (its seeds and validation rows).
    runs: BTreeMap<String, PathBuf>,
    cache: PathBuf,
}

enum Curated {
    File(PathBuf),
    Project(PathBuf),
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        data: PathBuf::from("../shared/data"),
        sets: ["agnews", "clinc20", "tweet_emotion", "financial_phrasebank"]
            .map(String::from)
            .to_vec(),
        draws: 5,
        seeds: 2,
        val: 200,
        test: 1000,
        extra: 100,
        curated: BTreeMap::new(),
        runs: BTreeMap::new(),
        cache: PathBuf::from("target/outcome-cache"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--data" => a.data = val()?.into(),
            "--sets" => a.sets = val()?.split(',').map(String::from).collect(),
            "--draws" => a.draws = val()?.parse()?,
            "--seeds" => a.seeds = val()?.parse()?,
            "--val" => a.val = val()?.parse()?,
            "--test" => a.test = val()?.parse()?,
            "--extra" => a.extra = val()?.parse()?,
            "--cache" => a.cache = val()?.into(),
            "--run" => {
                let v = val()?;
                let (set, path) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--run takes SET=DIR, got {v}"))?;
                a.runs.insert(set.to_string(), path.into());
            }
            "--curated" | "--project" => {
                let v = val()?;
                let (set, path) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("{flag} takes SET=PATH, got {v}"))?;
                let c = if flag == "--curated" {
                    Curated::File(path.into())
                } else {
                    Curated::Project(path.into())
                };
                a.curated.insert(set.to_string(), c);
            }
            "-h" | "--help" => {
                println!(
                    "outcome [--data DIR] [--sets a,b] [--draws 5] [--seeds 2] [--val 200] \
                     [--test 1000] [--extra 100] [--curated SET=FILE.jsonl]... \
                     [--project SET=DIR]... [--run SET=DIR]... [--cache DIR]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other} (see --help)"),
        }
    }
    Ok(a)
}

/// Texts and label names of a JSONL/CSV file.
fn read_set(path: &Path) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let ex = read_examples(path, &Columns::default())?;
    Ok(ex.into_iter().map(|e| (e.text, e.label)).unzip())
}

fn curated_examples(c: &Curated) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    match c {
        Curated::File(p) => read_set(p),
        Curated::Project(dir) => {
            let project = Project::open_read_only(dir)?;
            let classes = project.class_names();
            let seeds = straddle::classify::training_set(project.state(), &classes, false);
            let all = straddle::classify::training_set(project.state(), &classes, true);
            Ok(all
                .ids
                .iter()
                .zip(&all.texts)
                .zip(&all.labels)
                .filter(|((id, _), _)| !seeds.ids.contains(id))
                .map(|((_, t), &l)| (t.clone(), classes[l].clone()))
                .unzip())
        }
    }
}

/// Mean and standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

#[derive(Default)]
struct Cell {
    acc: Vec<f64>,
    f1: Vec<f64>,
    ece: Vec<f64>,
}

impl Cell {
    fn show(&self) -> String {
        if self.acc.is_empty() {
            return "–".into();
        }
        let (a, sd) = mean_sd(&self.acc);
        let (f, _) = mean_sd(&self.f1);
        format!("{a:.3} ±{sd:.3} ({f:.3})")
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = default_model_dir();
    let embedder = LocalEmbedder::load(&dir).map_err(|e| {
        anyhow::anyhow!("{e}\n(the embedding model is needed: scripts/embedder.sh install)")
    })?;
    let lcfg = LinearConfig::default();
    if !args.runs.is_empty() {
        let embedder: std::sync::Arc<dyn Embedder> = std::sync::Arc::new(embedder);
        return run_mode(&args, embedder);
    }
    println!(
        "Outcome benchmark: {} seeds per class, {} draws, {} validation rows kept out, \
         {} test rows; mean accuracy ±sd (macro-F1).\n",
        args.seeds, args.draws, args.val, args.test
    );
    let mut table = Vec::new();
    for set in &args.sets {
        let path = args.data.join(format!("{set}.jsonl"));
        if !path.exists() {
            anyhow::bail!(
                "{} is missing: the outcome benchmark reads the shared data sets \
                 (../shared/data beside the clone, or --data DIR)",
                path.display()
            );
        }
        let (texts, label_names) = read_set(&path)?;
        let mut classes: Vec<String> = label_names.clone();
        classes.sort();
        classes.dedup();
        let k = classes.len();
        let labels: Vec<usize> = label_names
            .iter()
            .map(|l| classes.binary_search(l).expect("a known label"))
            .collect();
        let curated = match args.curated.get(set) {
            Some(c) => {
                let (t, l) = curated_examples(c)?;
                let mut cs = LabelledSet::default();
                for (t, l) in t.iter().zip(&l) {
                    cs.push(&classes, 0, t, l);
                }
                Some(cs)
            }
            None => None,
        };
        let extra = curated.as_ref().map_or(args.extra, |c| c.len());
        // Embed every row once (cached on disk across runs).
        let t0 = Instant::now();
        let store = VectorStore::open(&args.cache, embedder.model_id());
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let vecs = rt.block_on(store.embed(&embedder, &texts))?;
        let x = Dense::from_rows(&vecs);
        let cx = match &curated {
            Some(c) => Some(Dense::from_rows(
                &rt.block_on(store.embed(&embedder, &c.texts))?,
            )),
            None => None,
        };
        eprintln!(
            "{set}: {} rows, {k} classes, embedded in {:.1} s",
            texts.len(),
            t0.elapsed().as_secs_f64()
        );
        // Embedding + hashed n-grams (1,024 columns at weight 0.5).
        let hx = straddle::classify::dense::concat(
            &x,
            &straddle::classify::dense::hashed_ngrams(&texts, 1024),
            0.5,
        );
        let hcx = cx.as_ref().zip(curated.as_ref()).map(|(cx, cs)| {
            straddle::classify::dense::concat(
                cx,
                &straddle::classify::dense::hashed_ngrams(&cs.texts, 1024),
                0.5,
            )
        });
        // cells[model][condition]
        let mut cells: [[Cell; 3]; 3] = Default::default();
        let mut fit_ms = Vec::new();
        let mut iters = Vec::new();
        for draw in 0..args.draws {
            let mut order: Vec<usize> = (0..texts.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(draw as u64));
            let mut per_class = vec![0usize; k];
            let mut seeds = Vec::new();
            let mut rest = Vec::new();
            for &i in &order {
                if per_class[labels[i]] < args.seeds {
                    per_class[labels[i]] += 1;
                    seeds.push(i);
                } else {
                    rest.push(i);
                }
            }
            let test = &rest[args.val..args.val + args.test];
            let pool = &rest[args.val + args.test..];
            let real: Vec<usize> = seeds
                .iter()
                .chain(&pool[..extra.min(pool.len())])
                .copied()
                .collect();
            let truth: Vec<usize> = test.iter().map(|&i| labels[i]).collect();
            let conditions: Vec<(usize, Vec<usize>, bool)> = vec![
                (0, seeds.clone(), false),
                (1, real, false),
                (2, seeds.clone(), true),
            ];
            for (c, rows, with_curated) in conditions {
                if with_curated && curated.is_none() {
                    continue;
                }
                let mut tr_texts: Vec<String> = rows.iter().map(|&i| texts[i].clone()).collect();
                let mut tr_labels: Vec<usize> = rows.iter().map(|&i| labels[i]).collect();
                let mut tr_x = x.select(&rows);
                let mut tr_hx = hx.select(&rows);
                if with_curated {
                    let cs = curated.as_ref().expect("checked");
                    let cxm = cx.as_ref().expect("embedded with the curated set");
                    let hcxm = hcx.as_ref().expect("built with the curated set");
                    tr_texts.extend(cs.texts.iter().cloned());
                    tr_labels.extend(&cs.labels);
                    for i in 0..cs.len() {
                        tr_x.push(cxm.row(i));
                        tr_hx.push(hcxm.row(i));
                    }
                }
                let te_texts: Vec<String> = test.iter().map(|&i| texts[i].clone()).collect();
                // n-gram model
                let ng = Classifier::train(
                    &classes,
                    &tr_texts,
                    &tr_labels,
                    &TrainConfig::for_classes(k, draw as u64),
                );
                let pred: Vec<usize> = ng
                    .predict_proba_batch(&te_texts)
                    .iter()
                    .map(|p| argmax(p))
                    .collect();
                let s = score(&classes, &truth, &pred);
                cells[0][c].acc.push(s.accuracy);
                cells[0][c].f1.push(s.macro_f1);
                // embedding model
                let t = Instant::now();
                let fit = fit_calibrated(
                    &classes,
                    &tr_x,
                    &tr_labels,
                    &LinearConfig {
                        seed: draw as u64,
                        ..lcfg.clone()
                    },
                );
                fit_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                iters.push(fit.model.iterations() as f64);
                let proba = fit.model.predict_proba_batch(&x.select(test));
                let pred: Vec<usize> = proba.iter().map(|p| argmax(p)).collect();
                let s = score(&classes, &truth, &pred);
                cells[1][c].acc.push(s.accuracy);
                cells[1][c].f1.push(s.macro_f1);
                cells[1][c]
                    .ece
                    .push(reliability::ece(&reliability::reliability(
                        &proba, &truth, 10,
                    )));
                // embedding + n-grams
                let fit = fit_calibrated(
                    &classes,
                    &tr_hx,
                    &tr_labels,
                    &LinearConfig {
                        seed: draw as u64,
                        ..lcfg.clone()
                    },
                );
                let proba = fit.model.predict_proba_batch(&hx.select(test));
                let pred: Vec<usize> = proba.iter().map(|p| argmax(p)).collect();
                let s = score(&classes, &truth, &pred);
                cells[2][c].acc.push(s.accuracy);
                cells[2][c].f1.push(s.macro_f1);
                cells[2][c]
                    .ece
                    .push(reliability::ece(&reliability::reliability(
                        &proba, &truth, 10,
                    )));
            }
        }
        let (ms, _) = mean_sd(&fit_ms);
        let (it, _) = mean_sd(&iters);
        eprintln!("{set}: calibrated fit {ms:.1} ms on average, {it:.0} L-BFGS iterations");
        // Speed on every row of the set (embeddings excluded).
        let all: Vec<usize> = (0..x.len()).collect();
        let t = Instant::now();
        let big = straddle::classify::LinearModel::fit(&classes, &x, &labels, &all, &lcfg);
        let fit_big = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let cal = fit_calibrated(&classes, &x, &labels, &lcfg);
        let cal_big = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let _ = cal.model.predict_proba_batch(&x);
        let pred_big = t.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "{set}: all {} rows: fit {fit_big:.0} ms ({} iterations), calibrated fit {cal_big:.0} ms, \
             predict {pred_big:.1} ms",
            x.len(),
            big.iterations()
        );
        table.push((set.clone(), k, extra, cells));
    }
    println!(
        "| set | classes (chance) | model | seeds only | + N real (ceiling) | + N curated | ECE seeds / + real |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (set, k, extra, cells) in &table {
        for (m, name) in ["n-gram", "embedding", "embedding + n-grams"]
            .iter()
            .enumerate()
        {
            let ece = if m >= 1 && !cells[m][0].ece.is_empty() {
                format!(
                    "{:.3} / {:.3}",
                    mean_sd(&cells[m][0].ece).0,
                    mean_sd(&cells[m][1].ece).0
                )
            } else {
                "–".into()
            };
            println!(
                "| {set} | {k} ({:.2}) | {name} | {} | {} (N={extra}) | {} | {ece} |",
                1.0 / *k as f64,
                cells[m][0].show(),
                cells[m][1].show(),
                cells[m][2].show(),
            );
        }
    }
    Ok(())
}

/// One condition of the run table: what was added to the seeds.
struct RunRow {
    name: String,
    added: usize,
    /// Per model: (accuracy interval, difference to seeds only, macro-F1).
    cells: Vec<(Interval, Interval, f64)>,
}

use straddle::classify::Interval;

/// `--run SET=DIR`: the project's seeds and validation rows (as
/// `scripts/shared-project.sh` drew them), its generated examples, and the
/// set's other rows: the first `--test` of them scored on, the rest the
/// pool of real examples for the ceiling. Conditions: seeds only; + every
/// generated example; + those the LLM judge (relabel) agrees with; + those
/// the chosen judge (`straddle judge`'s choice, measured here on the
/// validation rows) agrees with; + as many real rows as the chosen judge
/// kept. Accuracy with its 95 % bootstrap interval over the test rows and
/// the paired difference to seeds only, for both small models.
fn run_mode(args: &Args, embedder: std::sync::Arc<dyn Embedder>) -> anyhow::Result<()> {
    use straddle::app::judges;
    use straddle::classify::{SmallModel, bootstrap};
    let encoder = straddle::app::small_model::ProjectEncoder::new(embedder, &args.cache, false);
    println!(
        "Outcome of recorded generation runs: the run's seeds, {} test rows, accuracy \
         [95% bootstrap interval] and the paired difference to seeds only (macro-F1).\n",
        args.test
    );
    let mut out = Vec::new();
    for (set, dir) in &args.runs {
        let project = Project::open_read_only(dir)?;
        let st = project.state();
        let classes = project.class_names();
        let k = classes.len();
        let seeds = straddle::classify::training_set(st, &classes, false);
        let heldout = straddle::classify::heldout_set(st, &classes);
        let path = args.data.join(format!("{set}.jsonl"));
        let (texts, labels) = read_set(&path)?;
        let known: std::collections::HashSet<&str> = seeds
            .texts
            .iter()
            .chain(&heldout.texts)
            .map(|t| t.as_str())
            .collect();
        let rest: Vec<usize> = (0..texts.len())
            .filter(|&i| !known.contains(texts[i].replace('\n', " ").as_str()))
            .filter(|&i| !known.contains(texts[i].as_str()))
            .collect();
        let test: Vec<usize> = rest.iter().copied().take(args.test).collect();
        let pool: Vec<usize> = rest.iter().copied().skip(args.test).collect();
        let te_texts: Vec<String> = test.iter().map(|&i| texts[i].clone()).collect();
        let truth: Vec<usize> = test
            .iter()
            .map(|&i| {
                classes
                    .iter()
                    .position(|c| *c == labels[i])
                    .expect("a class")
            })
            .collect();
        // The judges, measured on the run's validation rows.
        let fp = judges::relabel_fingerprint(&project)?;
        let (_, lcfg) = straddle::app::small_model::configs(&project);
        let measured = judges::measure(st, &classes, &fp, Ok(&encoder), &lcfg)?;
        let choice = judges::choose(&measured, project.config().judge.use_);
        eprintln!(
            "{set}: judges on the validation rows\n{}",
            judges::render(&measured, &choice)
        );
        let chosen = choice
            .judge
            .clone()
            .unwrap_or_else(|| judges::RELABEL.into());
        let ops = judges::opinions(
            st,
            &classes,
            &[judges::RELABEL, chosen.as_str()],
            &measured,
            Some(&encoder),
            &lcfg,
        )?;
        let generated: Vec<&straddle::domain::SampleState> = st.generated().collect();
        let kept = |judge: &str| -> LabelledSet {
            let mut s = seeds.clone();
            for g in &generated {
                let agrees = ops
                    .get(judge, g.id)
                    .is_some_and(|o| o.label == Some(g.label.as_str()));
                if agrees {
                    s.push(&classes, g.id, g.text(), &g.label);
                }
            }
            s
        };
        let mut all = seeds.clone();
        for g in &generated {
            all.push(&classes, g.id, g.text(), &g.label);
        }
        let by_llm = kept(judges::RELABEL);
        let by_chosen = kept(&chosen);
        let n_real = by_chosen.len() - seeds.len();
        let mut ceiling = seeds.clone();
        for &i in pool.iter().take(n_real) {
            ceiling.push(&classes, 0, &texts[i], &labels[i]);
        }
        let conditions: Vec<(String, LabelledSet)> = vec![
            ("seeds only".into(), seeds.clone()),
            ("+ all generated".into(), all),
            ("+ generated, LLM judge agrees".into(), by_llm),
            (
                format!("+ generated, chosen judge ({chosen}) agrees"),
                by_chosen,
            ),
            ("+ as many real rows (ceiling)".into(), ceiling),
        ];
        let ngram_cfg = TrainConfig::for_classes(k, 0);
        let models = [
            SmallModel::Ngram(&ngram_cfg),
            SmallModel::Embedding {
                encoder: &encoder,
                cfg: &lcfg,
            },
        ];
        let mut preds: Vec<Vec<Vec<usize>>> = Vec::new();
        for (_, train) in &conditions {
            let mut per_model = Vec::new();
            for m in &models {
                let proba = m.fit_predict(&classes, train, &te_texts)?;
                per_model.push(proba.iter().map(|p| argmax(p)).collect::<Vec<usize>>());
            }
            preds.push(per_model);
        }
        let mut rows = Vec::new();
        for (c, (name, train)) in conditions.iter().enumerate() {
            let cells = (0..models.len())
                .map(|m| {
                    let cmp = bootstrap::compare(k, &truth, &preds[0][m], &preds[c][m], 1000, 0);
                    (
                        cmp.new.accuracy,
                        cmp.accuracy_diff,
                        cmp.new.macro_f1.estimate,
                    )
                })
                .collect();
            rows.push(RunRow {
                name: name.clone(),
                added: train.len() - seeds.len(),
                cells,
            });
        }
        out.push((set.clone(), k, generated.len(), choice, rows));
    }
    println!(
        "| set (chance) | training data | added | n-gram accuracy | Δ vs seeds | embedding accuracy | Δ vs seeds |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (set, k, n_gen, choice, rows) in &out {
        for r in rows {
            let cell = |i: usize| {
                let (a, d, f) = &r.cells[i];
                (
                    format!("{:.3} [{:.3}, {:.3}] ({f:.3})", a.estimate, a.low, a.high),
                    format!("{:+.3} [{:+.3}, {:+.3}]", d.estimate, d.low, d.high),
                )
            };
            let (na, nd) = cell(0);
            let (ea, ed) = cell(1);
            println!(
                "| {set} ({:.2}) | {} | {} | {na} | {nd} | {ea} | {ed} |",
                1.0 / *k as f64,
                r.name,
                r.added
            );
        }
        println!(
            "| {set} | ({n_gen} generated; chosen judge: {} — {}) | | | | | |",
            choice.judge.as_deref().unwrap_or("none"),
            choice.why.replace('|', "/")
        );
    }
    Ok(())
}
