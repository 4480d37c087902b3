// A real-world program beside the course ones: a parallel word count over files with a
// Pool, where one file cannot be read and one crashes its worker. The Python it
// replaces:
//
//   def count_words(path):
//       with open(path) as f:                       # may raise OSError
//           return Counter(f.read().split())
//
//   with Pool() as pool:
//       results = [(p, pool.apply_async(count_words, (p,))) for p in paths]
//       total = Counter()
//       for path, result in results:
//           try:
//               total += result.get()
//           except OSError as e:
//               print(f'{path}: {e}')
//
// Each file is its own task, so a failure stays with its file: an exception in a task
// arrives as mp::RemoteError, and a worker that dies mid-task (here: std::abort on a
// file that starts with "#crash", as a parser bug would) fails only its task with
// mp::WorkerLostError; the pool replaces the worker and counts on. Python's Pool would
// hang forever on the crashed task.
//
// usage: example_word_count [FILE...]
//   Without files it writes a small corpus to a temporary directory: six text files,
//   one that crashes its worker, and one path that does not exist.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

using Counts = std::map<std::string, long>;

// Runs in a pool worker.
Counts count_words(std::string path) {
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("cannot open " + std::filesystem::path(path).filename().string());
  std::string first_line;
  std::getline(in, first_line);
  if (first_line == "#crash") std::abort();  // a crashing parser, say
  Counts counts;
  std::istringstream head(first_line);
  for (std::string word; head >> word;) ++counts[word];
  for (std::string word; in >> word;) ++counts[word];
  return counts;
}

// A deterministic corpus: file i repeats a sentence i + 1 times.
std::vector<std::string> write_corpus(const std::filesystem::path& dir) {
  const char* sentence = "the quick brown fox jumps over the lazy dog and the cat\n";
  std::vector<std::string> paths;
  for (int i = 0; i < 6; ++i) {
    const auto path = dir / ("part" + std::to_string(i) + ".txt");
    std::ofstream out(path);
    for (int line = 0; line <= i * 100; ++line) out << sentence;
    paths.push_back(path.string());
  }
  std::ofstream(dir / "poison.txt") << "#crash\nnot counted\n";
  paths.push_back((dir / "poison.txt").string());
  paths.push_back((dir / "missing.txt").string());
  return paths;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  std::vector<std::string> paths = example::parse_args(argc, argv, "[FILE...]");
  std::filesystem::path corpus;
  if (paths.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "mp_word_count_XXXXXX");
    if (!::mkdtemp(pattern.data())) return 1;
    corpus = pattern;
    paths = write_corpus(corpus);
  }

  Counts total;
  int counted = 0, failed = 0;
  {
    mp::Pool pool({.processes = 2});
    std::vector<mp::AsyncResult<Counts>> results;
    for (const auto& path : paths) results.push_back(pool.apply_async(&count_words, path));
    for (std::size_t i = 0; i < paths.size(); ++i) {
      const std::string name = std::filesystem::path(paths[i]).filename().string();
      try {
        for (const auto& [word, n] : results[i].get()) total[word] += n;
        ++counted;
      } catch (const mp::WorkerLostError& e) {
        example::say("%s: worker lost: %s\n", name.c_str(), e.what());
        ++failed;
      } catch (const mp::RemoteError& e) {
        example::say("%s: failed: %s\n", name.c_str(), e.what());
        ++failed;
      }
    }
    // The pool is still whole after the crash: one more task to show it.
    example::say("pool still works: %zu words in a last file\n",
                 results.empty() ? 0 : pool.apply(&count_words, paths[0]).size());
  }
  if (!corpus.empty()) std::filesystem::remove_all(corpus);

  std::vector<std::pair<long, std::string>> by_count;
  long words = 0;
  for (const auto& [word, n] : total) {
    by_count.emplace_back(-n, word);
    words += n;
  }
  std::sort(by_count.begin(), by_count.end());
  example::say("%d file(s) counted, %d failed: %ld words, %zu distinct\n", counted, failed, words,
               total.size());
  for (std::size_t i = 0; i < by_count.size() && i < 3; ++i)
    example::say("  %-6s %ld\n", by_count[i].second.c_str(), -by_count[i].first);
  return 0;
}
