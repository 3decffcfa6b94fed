// What every C++ shim of the trainer shares: C++ exceptions become malloc'd messages (NULL on
// success) that the Rust side frees with `sw_free_error`, so an exception never unwinds into Rust.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>

namespace stagewise {

inline char* error_message(const char* what) {
    char* copy = static_cast<char*>(std::malloc(std::strlen(what) + 1));
    if (copy != nullptr) {
        std::strcpy(copy, what);
    }
    return copy;
}

// Run `body`; its exception, if any, as a message.
template <typename F>
char* guarded(F&& body) {
    try {
        body();
        return nullptr;
    } catch (const std::exception& e) {
        return error_message(e.what());
    } catch (...) {
        return error_message("unknown C++ exception");
    }
}

}  // namespace stagewise
