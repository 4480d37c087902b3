// ProcessPoolExecutor, from the course notes ("The Executor API"):
//
//   from concurrent.futures import ProcessPollExecutor
//   import hashlib
//
//   texts=['this is good','text is good']
//
//   def generate_hash(text):
//       return hashlib.sha384(text).hexdigest()
//
//   if __name__ == '__main__':
//       with ProcessPoolExecutor() as executor:
//           for text, hash_t in zip(texts, executor.map(generate_hash, texts)):
//               print('%s hash is: %s' %(text, hash_t))
//
// prints (once the seed's typos are fixed: ProcessPoolExecutor, and text.encode(), since
// sha384 takes bytes)
//   this is good hash is:
//   e5e0197de50509cabd377f29d85d32c5e9cc3af628b7c2335be98609945b607d7c71baf43311ebe8d40df8a7043ae634
//   text is good hash is:
//   ae09a3c114181a4f1620216e91f9bd71f79fad300c043a2feb04a0dd395d5ccb2e8192f7e3900e60110cb3eecca8c3e7
//
// The seeds also show submit() and as_completed() ("Future Object", "Module functions"):
//
//   futures = [executor.submit(generate_hash, text) for text in texts]
//   for future in as_completed(futures):
//       print('a hash is ready:', future.result())
//
// which this example does too. SHA-384 comes from OpenSSL's libcrypto, as Python's
// hashlib does.
#include <openssl/evp.h>

#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

std::string generate_hash(std::string text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha384(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  const std::vector<std::string> texts = {"this is good", "text is good"};
  mp::ProcessPoolExecutor executor;
  std::size_t i = 0;
  for (const std::string& hash_t : executor.map(&generate_hash, texts))
    example::say("%s hash is: %s\n", texts[i++].c_str(), hash_t.c_str());

  std::vector<mp::Future<std::string>> futures;
  for (const std::string& text : texts) futures.push_back(executor.submit(&generate_hash, text));
  for (const mp::Future<std::string>& future : mp::futures::as_completed(futures))
    example::say("a hash is ready: %s\n", future.result().c_str());
  executor.shutdown();
  return 0;
}
